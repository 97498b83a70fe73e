/**
 * The vendored Lua scripts (`vendor/lua`) and their manifest, loaded once when a Redis backend is
 * built. Each script is addressed by name; its KEYS and ARGV are marshalled by the names the manifest
 * lists, never by a hard-coded order.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { readFile, stat } from "node:fs/promises"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { BackendError } from "../Errors.js"

/**
 * One manifest entry: the script's name, the strategy and role it serves, its file, the names of its
 * KEYS and ARGV in order, and the SHA-1 of its bytes (the id Redis caches it under).
 *
 * @since 0.1.0
 * @category models
 */
export const ScriptSpec = Schema.Struct({
  name: Schema.String,
  strategy: Schema.String,
  role: Schema.String,
  file: Schema.String,
  keys: Schema.Array(Schema.String),
  argv: Schema.Array(Schema.String),
  sha1: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{40}$/))
})

/**
 * @since 0.1.0
 * @category models
 */
export type ScriptSpec = typeof ScriptSpec.Type

/**
 * The manifest file's shape: `{ scripts: [...] }` (other top-level fields are notes for people).
 *
 * @since 0.1.0
 * @category models
 */
export const Manifest = Schema.Struct({ scripts: Schema.Array(ScriptSpec) })

/**
 * @since 0.1.0
 * @category models
 */
export type Manifest = typeof Manifest.Type

/**
 * A script ready to run: its manifest entry and its exact text.
 *
 * @since 0.1.0
 * @category models
 */
export interface Script extends ScriptSpec {
  readonly text: string
  /**
   * Where the script's `fence` ARGV sits (its index in `argv`), or -1 when it takes none. A consuming
   * script takes one: the runner fills it on every send (`ScriptRunner`), and the script applies nothing
   * once the Redis clock is past it.
   */
  readonly fenceAt: number
}

/**
 * Every vendored script, by name.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptCatalog {
  readonly scripts: ReadonlyMap<string, Script>
  /** The script serving `role` for `strategy`, if the manifest has one. */
  readonly find: (strategy: string, role: string) => Script | undefined
}

/**
 * The SHA-1 of a script's exact bytes, lowercase hex (what EVALSHA takes).
 *
 * @since 0.1.0
 * @category utils
 */
export const sha1Hex = (text: string): string => createHash("sha1").update(text, "utf8").digest("hex")

const loadError = (detail: string, cause?: unknown) =>
  new BackendError({ backend: "redis", code: "SCRIPT_LOAD", detail, ...(cause === undefined ? {} : { cause }) })

const exists = (path: string) =>
  Effect.tryPromise({ try: () => stat(path), catch: () => false as const }).pipe(
    Effect.map((s) => s.isFile()),
    Effect.orElseSucceed(() => false)
  )

/**
 * Finds `vendor/lua` by walking up from this module (it sits two levels up from `src/redis` and three
 * from `dist/src/redis`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const findScriptDir: Effect.Effect<string, BackendError> = Effect.gen(function*() {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "vendor", "lua")
    if (yield* exists(join(candidate, "manifest.json"))) return candidate
    dir = dirname(dir)
  }
  return yield* Effect.fail(loadError("vendor/lua/manifest.json not found above the throttlekit-effect module"))
})

const readText = (path: string) =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) => loadError(`cannot read ${path}`, cause)
  })

/** The span `loadScripts` runs in (a test counts them: a server reads the scripts once). */
const loadScriptsSpan = "Scripts.load"

/**
 * Reads the manifest and every script it lists from `dir` (default: the package's `vendor/lua`), and
 * checks that each file's SHA-1 matches the manifest, so a drifted file fails the build of the layer
 * instead of running under a wrong id.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loadScripts = (dir?: string): Effect.Effect<ScriptCatalog, BackendError> =>
  Effect.withSpan(loadScriptsSpan)(Effect.gen(function*() {
    const base = dir ?? (yield* findScriptDir)
    const raw = yield* readText(join(base, "manifest.json"))
    const json = yield* Effect.try({
      try: () => JSON.parse(raw) as unknown,
      catch: (e) => loadError("manifest.json is not JSON", e)
    })
    const manifest = yield* Schema.decodeUnknown(Manifest)(json).pipe(
      Effect.mapError((e) => loadError(`manifest.json does not match the expected shape: ${e.message}`))
    )
    const scripts = new Map<string, Script>()
    for (const spec of manifest.scripts) {
      const text = yield* readText(join(base, spec.file))
      const actual = sha1Hex(text)
      if (actual !== spec.sha1) {
        return yield* Effect.fail(
          loadError(`${spec.file}: SHA-1 ${actual} differs from the manifest's ${spec.sha1} (run npm run lua:build)`)
        )
      }
      scripts.set(spec.name, { ...spec, text, fenceAt: spec.argv.indexOf(FENCE) })
    }
    const byRole = new Map<string, Script>()
    for (const script of scripts.values()) byRole.set(`${script.strategy}/${script.role}`, script)
    const catalog: ScriptCatalog = { scripts, find: (strategy, role) => byRole.get(`${strategy}/${role}`) }
    return catalog
  }))

/**
 * Values for a script's KEYS or ARGV, by manifest name. A name ending in `...` takes a list (the rest of
 * ARGV).
 *
 * @since 0.1.0
 * @category models
 */
export type Named = Readonly<Record<string, string | number | ReadonlyArray<string>>>

/**
 * The ARGV name of a consuming script's deadline on the Redis clock (epoch-ms; 0 = none). Callers leave
 * it out (`marshal` writes 0); the runner sets it when it sends the call.
 *
 * @since 0.2.0
 * @category constants
 */
export const FENCE = "fence"

const marshalError = (script: Script, part: "keys" | "argv", name: string, problem: string) =>
  new BackendError({
    backend: "redis",
    code: "MARSHAL",
    detail: `${script.name}: ${part === "keys" ? "KEYS" : "ARGV"} "${name}" ${problem}`
  })

/**
 * Orders `values` by `names` (the manifest's order); fails when a name has no value of the right shape.
 *
 * @since 0.1.0
 * @category utils
 */
export const marshal = (
  script: Script,
  part: "keys" | "argv",
  values: Named
): Effect.Effect<Array<string>, BackendError> => {
  const out: Array<string> = []
  for (const name of script[part]) {
    const value = values[name] ?? (part === "argv" && name === FENCE ? 0 : undefined)
    if (value === undefined) return Effect.fail(marshalError(script, part, name, "has no value"))
    if (name.endsWith("...")) {
      if (typeof value !== "object") return Effect.fail(marshalError(script, part, name, "takes a list"))
      for (const item of value) out.push(item)
    } else if (typeof value === "object") {
      return Effect.fail(marshalError(script, part, name, "takes one value, not a list"))
    } else {
      out.push(typeof value === "number" ? String(value) : value)
    }
  }
  return Effect.succeed(out)
}
