/**
 * Policy file text → a raw value, with a `Locator` that maps a field's path back to its line. Text whose
 * trimmed start is `{` or `[` is JSON; anything else is YAML 1.2 (a real parser, so block lists, anchors
 * and nested flow maps all work). Duplicate keys are errors in both formats: the YAML parser reports them,
 * and for JSON this module scans the text for them, since `JSON.parse` keeps the last one silently. A
 * syntax error is a problem at the file itself that names its line.
 *
 * @since 0.2.0
 * @internal
 */
import * as Either from "effect/Either"
import { type Document, isAlias, isMap, isScalar, LineCounter, parseDocument } from "yaml"
import { type Decoded, type Locator, oneLine, type Path, type Problem } from "./problem.js"

/**
 * Parsed text: the raw value, and where its keys are in the text.
 *
 * @since 0.2.0
 * @internal
 */
export interface Parsed {
  readonly value: unknown
  readonly locator: Locator
}

const errorMessage = (error: unknown): string => error instanceof Error ? error.message : String(error)

const parseYaml = (text: string): Decoded<Parsed> => {
  const lines = new LineCounter()
  return Either.flatMap(
    Either.try({
      try: () =>
        parseDocument(text, {
          lineCounter: lines,
          prettyErrors: false,
          uniqueKeys: true,
          stringKeys: true,
          logLevel: "silent"
        }),
      catch: (error): Problem => ({ path: [], reason: `invalid YAML: ${oneLine(errorMessage(error))}` })
    }),
    (doc) => {
      const first = doc.errors[0]
      if (first !== undefined) {
        const line = lines.linePos(first.pos[0]).line
        return Either.left({ path: [], reason: `line ${line}: ${oneLine(first.message)}`, line })
      }
      return Either.map(
        Either.try({
          try: (): unknown => doc.toJS({ maxAliasCount: 100 }),
          catch: (error): Problem => ({ path: [], reason: `invalid YAML: ${oneLine(errorMessage(error))}` })
        }),
        (value) => ({ value, locator: yamlLocator(doc, lines) })
      )
    }
  )
}

const yamlLocator = (doc: Document.Parsed, lines: LineCounter): Locator => {
  /** Follows `path` through the document's maps; stops at the first segment it cannot find. */
  const walk = (path: Path): { readonly node: unknown; readonly depth: number; readonly line: number | undefined } => {
    let node: unknown = doc.contents
    let line: number | undefined
    let depth = 0
    for (const segment of path) {
      const container = isAlias(node) ? node.resolve(doc) : node
      if (!isMap(container)) break
      const pair = container.items.find((item) => isScalar(item.key) && item.key.value === segment)
      if (pair === undefined) break
      const range = isScalar(pair.key) ? pair.key.range : undefined
      if (range) line = lines.linePos(range[0]).line
      node = pair.value
      depth++
    }
    return { node, depth, line }
  }
  return {
    keysOf: (path) => {
      const found = walk(path)
      const node = isAlias(found.node) ? found.node.resolve(doc) : found.node
      if (found.depth !== path.length || !isMap(node)) return undefined
      return node.items.flatMap((item) =>
        isScalar(item.key) && typeof item.key.value === "string" ? [item.key.value] : []
      )
    },
    lineOf: (path) => walk(path).line
  }
}

/** A key seen in JSON text: the path of the object holding it, and its line. */
interface JsonKey {
  readonly path: Path
  readonly key: string
  readonly line: number
}

/** Keys are recorded (for order and lines) only this deep; deeper objects are still checked for duplicates. */
const TRACKED_JSON_DEPTH = 6

interface JsonFrame {
  readonly path: Path | undefined
  readonly isObject: boolean
  readonly seen: Set<string>
  expectingKey: boolean
  key: string
  index: number
}

/**
 * Scans JSON text that `JSON.parse` accepted, for the things `JSON.parse` hides: key order, the line of each
 * key, and duplicate keys (which it silently collapses to the last).
 */
const scanJsonKeys = (text: string): { readonly keys: ReadonlyArray<JsonKey>; readonly duplicate?: JsonKey } => {
  const keys: Array<JsonKey> = []
  const stack: Array<JsonFrame> = []
  let line = 1
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    const top = stack[stack.length - 1]
    if (char === "\n") {
      line++
    } else if (char === "\"") {
      let end = i + 1
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      if (top !== undefined && top.isObject && top.expectingKey) {
        const key = String(JSON.parse(text.slice(i, end + 1)))
        const entry: JsonKey = { path: top.path ?? [], key, line }
        if (top.seen.has(key)) return { keys, duplicate: entry }
        top.seen.add(key)
        if (top.path !== undefined) keys.push(entry)
        top.key = key
        top.expectingKey = false
      }
      i = end
    } else if (char === "{" || char === "[") {
      const segment = top === undefined ? undefined : top.isObject ? top.key : String(top.index)
      const path = top === undefined
        ? []
        : top.path === undefined || top.path.length >= TRACKED_JSON_DEPTH || segment === undefined
        ? undefined
        : [...top.path, segment]
      stack.push({ path, isObject: char === "{", seen: new Set(), expectingKey: true, key: "", index: 0 })
    } else if (char === "}" || char === "]") {
      stack.pop()
    } else if (char === "," && top !== undefined) {
      if (top.isObject) top.expectingKey = true
      else top.index++
    }
  }
  return { keys }
}

const samePath = (a: Path, b: Path): boolean => a.length === b.length && a.every((segment, i) => segment === b[i])

const jsonLocator = (keys: ReadonlyArray<JsonKey>): Locator => ({
  keysOf: (path) => keys.filter((entry) => samePath(entry.path, path)).map((entry) => entry.key),
  lineOf: (path) => {
    for (let depth = path.length; depth > 0; depth--) {
      const parent = path.slice(0, depth - 1)
      const hit = keys.find((entry) => entry.key === path[depth - 1] && samePath(entry.path, parent))
      if (hit !== undefined) return hit.line
    }
    return undefined
  }
})

const lineAt = (text: string, offset: number): number => {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++
  return line
}

const parseJson = (text: string): Decoded<Parsed> =>
  Either.flatMap(
    Either.try({
      try: (): unknown => JSON.parse(text),
      catch: (error): Problem => {
        const message = errorMessage(error)
        const position = /at position (\d+)/.exec(message)
        if (position === null) return { path: [], reason: `invalid JSON: ${oneLine(message)}` }
        const line = lineAt(text, Number(position[1]))
        return {
          path: [],
          reason: `line ${line}: ${oneLine(message.replace(/ in JSON at position \d+.*$/s, ""))}`,
          line
        }
      }
    }),
    (value) =>
      Either.flatMap(
        Either.try({
          try: () => scanJsonKeys(text),
          catch: (error): Problem => ({ path: [], reason: `invalid JSON: ${oneLine(errorMessage(error))}` })
        }),
        ({ duplicate, keys }): Decoded<Parsed> =>
          duplicate === undefined
            ? Either.right({ value, locator: jsonLocator(keys) })
            : Either.left({
              path: [],
              reason: `line ${duplicate.line}: duplicate key ${JSON.stringify(duplicate.key)}`,
              line: duplicate.line
            })
      )
  )

/**
 * Parses policy file text (a leading byte order mark is skipped): JSON when its trimmed start is `{` or
 * `[`, YAML otherwise.
 *
 * @since 0.2.0
 * @internal
 */
export const parseText = (text: string): Decoded<Parsed> => {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text
  const trimmed = body.trim()
  return trimmed.startsWith("{") || trimmed.startsWith("[") ? parseJson(body) : parseYaml(body)
}
