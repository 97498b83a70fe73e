/**
 * Builds `vendor/lua/*.lua` and `vendor/lua/manifest.json` from `vendor/lua/src`: each source script names,
 * in `--!` directive lines, its strategy, role, KEYS, ARGV and the library parts (`src/lib/*.lua`) it uses;
 * the built script is those parts followed by the script's own body, self-contained, so any client (Node,
 * Python, this package) loads the same bytes. The manifest records each built file's SHA-1.
 *
 *   npm run lua:build           rewrite the built scripts and the manifest
 *   npm run lua:build -- --check   fail (exit 1) when they are not in step with the sources
 */
import { createHash } from "node:crypto"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** One built script: its manifest entry and its exact text. */
export interface BuiltScript {
  readonly name: string
  readonly strategy: string
  readonly role: string
  readonly file: string
  readonly keys: ReadonlyArray<string>
  readonly argv: ReadonlyArray<string>
  readonly sha1: string
  readonly text: string
}

/** Everything `lua:build` writes: the scripts and the manifest's JSON text. */
export interface Build {
  readonly scripts: ReadonlyArray<BuiltScript>
  readonly manifestText: string
}

/** The package's `vendor/lua` directory. */
export const luaDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "vendor", "lua")

const notes = [
  "ARGV 'now' is epoch-ms; 0 means the Redis server clock (TIME), the default for a fleet.",
  "Roles check and read are the ThrottleKit Lua wire (KEYS[1] = prefix:key, five-integer reply, state layout as the core).",
  "Roles peek, forecast, debit, admit, acquire, release, renew, reclaim, reserve are this package's own; they follow the same state layout.",
  "Roles penalize, reward and reset are this package's admin scripts (RateLimiterAdmin): the same keys and state layout.",
  "An argv name ending in '...' takes the rest of ARGV (a list).",
  "Cluster: every script touches only the keys it declares. The admission scripts take two or three keys, which share the",
  "hash tag {prefix}: leases = {prefix}#leases, guard = {prefix}#guard, and a unified admitter's rate key = {prefix}:key.",
  "So an admitter's rate keys differ from a plain limiter's wire key (prefix:key) and all of one admitter's keys live in one",
  "slot; plain limiters and budgets keep the wire key (one key per script, any slot).",
  "Roles federated.lease and regionFairPool.grant / release / stats are the core's coordinator and region-pool wire:",
  "one key (prefix:key), the core's ARGV first and state layout (see vendor/lua/README.md).",
  "Role multi.check is this package's own: several dimensions (rate checks and token-budget debits) on their wire keys",
  "(KEYS, one per dimension), decided at one instant and written all or nothing; on a cluster its keys must share a slot.",
  "Role many.check is this package's own: many checks of one policy (KEYS: n keys, then their n block keys), each key",
  "checked in turn at one instant and written as allowed, as its single-key script would (costs: one per key, or one for",
  "every key); on a cluster its keys share a slot.",
  "KEYS 'block' (check, debit, peek, forecast, penalize, reward; optional, after the key) is the key's admin block",
  "(RateLimiterAdmin.block): in the key's slot, holding the block's end; a blocked key is denied with resetAt = that",
  "end and nothing written. One key sent (the core's clients): no block is read. multi.check: the n keys, then their",
  "n block keys. Roles block / unblock set / delete it; reset deletes the key and its block.",
  "Files here are built from src/ by `npm run lua:build`; sha1 is the SHA-1 of the file's bytes (the EVALSHA id)."
]

interface Source {
  readonly strategy: string
  readonly role: string
  readonly keys: ReadonlyArray<string>
  readonly argv: ReadonlyArray<string>
  readonly uses: ReadonlyArray<string>
  readonly doc: ReadonlyArray<string>
  readonly body: string
}

const words = (value: string | undefined): Array<string> =>
  value === undefined ? [] : value.split(/\s+/).filter((w) => w.length > 0)

const parseSource = (file: string, text: string): Source => {
  const directives = new Map<string, string>()
  const doc: Array<string> = []
  const body: Array<string> = []
  for (const line of text.split("\n")) {
    const directive = /^--!\s*(\w+):\s*(.*)$/.exec(line)
    if (directive !== null) directives.set(directive[1]!, directive[2]!.trim())
    else if (body.length === 0 && line.startsWith("-- ")) doc.push(line)
    else body.push(line)
  }
  const strategy = directives.get("strategy")
  const role = directives.get("role")
  if (strategy === undefined || role === undefined) throw new Error(`${file}: missing --! strategy / --! role`)
  if (`${strategy}.${role}.lua` !== file) throw new Error(`${file}: name must be ${strategy}.${role}.lua`)
  return {
    strategy,
    role,
    keys: words(directives.get("keys")),
    argv: words(directives.get("argv")),
    uses: words(directives.get("uses")),
    doc,
    body: body.join("\n").replace(/\n+$/, "") + "\n"
  }
}

/** Builds every script in memory from `dir/src` (nothing is written). */
export const build = (dir: string = luaDir): Build => {
  const srcDir = join(dir, "src")
  const lib = (part: string): string => readFileSync(join(srcDir, "lib", `${part}.lua`), "utf8").replace(/\n+$/, "")
  const files = readdirSync(srcDir).filter((f) => f.endsWith(".lua")).sort()
  const scripts = files.map((file): BuiltScript => {
    const source = parseSource(file, readFileSync(join(srcDir, file), "utf8"))
    const name = `${source.strategy}.${source.role}`
    const header = [
      `-- throttlekit-effect ${name}: built from vendor/lua/src by \`npm run lua:build\` (edit the sources, not this file).`,
      `-- KEYS: ${source.keys.length === 0 ? "(none)" : source.keys.join(", ")}`,
      `-- ARGV: ${source.argv.length === 0 ? "(none)" : source.argv.join(", ")}`,
      ...source.doc
    ].join("\n")
    const parts = source.uses.map(lib)
    const text = [header, ...parts, source.body].join("\n\n")
    return {
      name,
      strategy: source.strategy,
      role: source.role,
      file: `${name}.lua`,
      keys: source.keys,
      argv: source.argv,
      sha1: createHash("sha1").update(text, "utf8").digest("hex"),
      text
    }
  })
  const manifest = {
    notes,
    scripts: scripts.map(({ argv, file, keys, name, role, sha1, strategy }) => ({
      name,
      strategy,
      role,
      file,
      keys,
      argv,
      sha1
    }))
  }
  return { scripts, manifestText: JSON.stringify(manifest, null, 2) + "\n" }
}

/** The built files that differ from what is on disk (empty when in step). */
export const drift = (dir: string = luaDir): Array<string> => {
  const result = build(dir)
  const read = (file: string): string | undefined => {
    try {
      return readFileSync(join(dir, file), "utf8")
    } catch {
      return undefined
    }
  }
  const stale = result.scripts.filter((s) => read(s.file) !== s.text).map((s) => s.file)
  if (read("manifest.json") !== result.manifestText) stale.push("manifest.json")
  return stale
}

const main = (args: ReadonlyArray<string>): number => {
  if (args.includes("--check")) {
    const stale = drift()
    if (stale.length > 0) {
      console.error(`vendor/lua is out of step with vendor/lua/src: ${stale.join(", ")} (run npm run lua:build)`)
      return 1
    }
    console.log("vendor/lua is in step with its sources")
    return 0
  }
  const result = build()
  for (const script of result.scripts) writeFileSync(join(luaDir, script.file), script.text)
  writeFileSync(join(luaDir, "manifest.json"), result.manifestText)
  console.log(`built ${result.scripts.length} scripts and manifest.json in ${luaDir}`)
  return 0
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2))
}
