/**
 * Whether two policy definitions are the same: deep equality of their plain decoded values (records,
 * arrays, numbers, strings, booleans; `undefined` fields count as absent). What a live reload uses to
 * tell an unchanged policy, whose state it keeps, from a changed one.
 *
 * @since 0.3.0
 * @internal
 */

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The keys of `record` whose value is not `undefined`. */
const definedKeys = (record: Readonly<Record<string, unknown>>): Array<string> =>
  Object.keys(record).filter((key) => record[key] !== undefined)

/**
 * Deep equality of plain decoded values.
 *
 * @since 0.3.0
 * @internal
 */
export const sameDefinition = (a: unknown, b: unknown): boolean => {
  if (Object.is(a, b)) return true
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => sameDefinition(item, b[i]))
  }
  if (!isRecord(a) || !isRecord(b)) return false
  const keys = definedKeys(a)
  if (keys.length !== definedKeys(b).length) return false
  return keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && sameDefinition(a[key], b[key]))
}
