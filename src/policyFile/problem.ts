/**
 * A problem with a policy, before it becomes a `PolicyError`: the path of the offending field in the
 * file format (`["limiters", "api", "burst"]`) and the reason. The policy set's rules, the text parser and
 * the file decoder all report these, so policies written in code and policies read from a file fail with
 * the same wording. Also the helpers their messages share, and the `Locator` that maps a path back to a
 * line of the source text.
 *
 * @since 0.2.0
 * @internal
 */
import * as Either from "effect/Either"

/**
 * Segments from the top of the file down to a field; `[]` is the file itself.
 *
 * @since 0.2.0
 * @internal
 */
export type Path = ReadonlyArray<string>

/**
 * A problem found while decoding, before it is located in a file.
 *
 * @since 0.2.0
 * @internal
 */
export interface Problem {
  readonly path: Path
  readonly reason: string
  /** Set only for syntax errors, whose line comes from the parser rather than from the path. */
  readonly line?: number
}

/**
 * A decoded value, or the first problem found.
 *
 * @since 0.2.0
 * @internal
 */
export type Decoded<A> = Either.Either<A, Problem>

/**
 * The problem `reason` at `path`.
 *
 * @since 0.2.0
 * @internal
 */
export const fail = (path: Path, reason: string): Decoded<never> => Either.left({ path, reason })

/**
 * Nothing wrong.
 *
 * @since 0.2.0
 * @internal
 */
export const done: Decoded<void> = Either.right(undefined)

/**
 * Where things are in the source text.
 *
 * @since 0.2.0
 * @internal
 */
export interface Locator {
  /** The keys of the map at `path`, in file order. */
  readonly keysOf: (path: Path) => ReadonlyArray<string> | undefined
  /** The line of the deepest key along `path` that exists in the file. */
  readonly lineOf: (path: Path) => number | undefined
}

/**
 * A short, human description of a raw value for error messages.
 *
 * @since 0.2.0
 * @internal
 */
export const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (value === undefined) return "nothing"
  if (typeof value === "string") {
    const quoted = JSON.stringify(value)
    return quoted.length > 60 ? `${quoted.slice(0, 57)}…"` : quoted
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value)
  if (Array.isArray(value)) return "a list"
  if (ArrayBuffer.isView(value)) return "binary data"
  if (typeof value === "object") return "a map"
  return `a ${typeof value}`
}

/**
 * `text` on one line (whitespace runs collapsed), cut to 200 characters: for a parser's or the file
 * system's message inside a reason.
 *
 * @since 0.2.0
 * @internal
 */
export const oneLine = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat
}
