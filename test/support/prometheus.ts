/**
 * A small reader of the Prometheus text exposition format (0.0.4), strict enough to catch a malformed
 * page: every sample belongs to a family declared before it with `# TYPE` (counter or gauge), label
 * values are quoted with the format's escapes (`\\`, `\"`, `\n`), values are numbers or `+Inf`, `-Inf`,
 * `NaN`, and the page ends with a newline. A page that breaks a rule fails with `PageError` naming the line.
 */
import { Data, Effect } from "effect"

/** One sample line. */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** A parsed page. */
export interface Page {
  /** Family name → its type. */
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
}

/** Why a page is not valid text format. */
export class PageError extends Data.TaggedError("PageError")<{ readonly line: number; readonly reason: string }> {
  override get message(): string {
    return `line ${this.line}: ${this.reason}`
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

const parseValue = (text: string): number | undefined => {
  if (text === "+Inf") return Infinity
  if (text === "-Inf") return -Infinity
  if (text === "NaN") return NaN
  return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text) ? Number(text) : undefined
}

/** The labels inside `{...}`, or the reason they do not parse. */
const parseLabels = (body: string): Record<string, string> | string => {
  const labels: Record<string, string> = {}
  let i = 0
  while (i < body.length) {
    const eq = body.indexOf("=", i)
    if (eq < 0) return "a label without ="
    const name = body.slice(i, eq)
    if (!LABEL_NAME.test(name)) return `bad label name ${JSON.stringify(name)}`
    if (body[eq + 1] !== "\"") return `label ${name}: value not quoted`
    let value = ""
    let j = eq + 2
    for (;;) {
      const c = body[j]
      if (c === undefined) return `label ${name}: unterminated value`
      if (c === "\"") break
      if (c === "\\") {
        const next = body[j + 1]
        if (next === "\\") value += "\\"
        else if (next === "\"") value += "\""
        else if (next === "n") value += "\n"
        else return `label ${name}: bad escape`
        j += 2
      } else {
        value += c
        j++
      }
    }
    if (Object.hasOwn(labels, name)) return `label ${name} repeated`
    labels[name] = value
    i = j + 1
    if (i < body.length) {
      if (body[i] !== ",") return `expected , after label ${name}`
      i++
    }
  }
  return labels
}

/** Reads a whole page. */
export const parsePage = (text: string): Effect.Effect<Page, PageError> =>
  Effect.suspend(() => {
    const fail = (line: number, reason: string) => Effect.fail(new PageError({ line, reason }))
    if (!text.endsWith("\n")) return fail(0, "the page does not end with a newline")
    const types = new Map<string, string>()
    const samples: Array<Sample> = []
    const lines = text.slice(0, -1).split("\n")
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n]!
      const at = n + 1
      if (line.startsWith("# HELP ")) continue
      if (line.startsWith("# TYPE ")) {
        const [name, type, ...rest] = line.slice("# TYPE ".length).split(" ")
        if (name === undefined || !NAME.test(name) || rest.length > 0) return fail(at, "bad TYPE line")
        if (type !== "counter" && type !== "gauge") return fail(at, `unexpected type ${type}`)
        if (types.has(name)) return fail(at, `family ${name} declared twice`)
        types.set(name, type)
        continue
      }
      const space = line.lastIndexOf(" ")
      if (space <= 0) return fail(at, "a sample without a value")
      const head = line.slice(0, space)
      const value = parseValue(line.slice(space + 1))
      if (value === undefined) return fail(at, "a sample value that is not a number")
      const brace = head.indexOf("{")
      const name = brace < 0 ? head : head.slice(0, brace)
      if (!NAME.test(name)) return fail(at, `bad metric name ${JSON.stringify(name)}`)
      if (!types.has(name)) return fail(at, `sample of ${name} before its TYPE`)
      let labels: Record<string, string> = {}
      if (brace >= 0) {
        if (!head.endsWith("}")) return fail(at, "unclosed label set")
        const parsed = parseLabels(head.slice(brace + 1, -1))
        if (typeof parsed === "string") return fail(at, parsed)
        labels = parsed
      }
      samples.push({ name, labels, value })
    }
    return Effect.succeed({ types, samples })
  })

/** The samples of `name` whose labels include `labels`. */
export const samplesOf = (page: Page, name: string, labels: Readonly<Record<string, string>> = {}) =>
  page.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

/** The value of the one sample of `name` with exactly `labels` (undefined when there is none). */
export const valueOf = (
  page: Page,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number | undefined => {
  const found = page.samples.filter((s) =>
    s.name === name && Object.keys(s.labels).length === Object.keys(labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`)
  return found[0]?.value
}
