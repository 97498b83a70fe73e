/**
 * Footprint: what a Memory-only app pays to have the package. The tarball (`npm pack`, which builds) is
 * installed into a fresh app outside the repository beside `effect` only, pinned to the versions this
 * repository tests with. Measured:
 *
 * - the size of that app's `node_modules` (files' bytes), beside `effect`'s own;
 * - cold imports, a fresh `node` per sample timing its dynamic `import()`s (process start excluded), the
 *   kinds alternating: `effect` alone (an Effect app's own start), `effect` then the root entry (that app
 *   with the package), and the root entry alone. `footprint.rootImportAddsMs` is the median of the second
 *   minus the median of the first: what the package adds to an Effect app's start (target under 150 ms).
 *
 * The root loading gRPC or ioredis would fail outright here: the app does not have them.
 */
import { execFile } from "node:child_process"
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type Plan, progress } from "../harness.js"
import type { Comparison, Section, SectionOutcome } from "../section.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const POLICIES = path.join(ROOT, "examples", "policies.yaml")

const exec = (command: string, args: ReadonlyArray<string>, cwd: string): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(command, args, { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout)
      else reject(new Error(`${command} ${args.join(" ")}: ${error.message}\n${stderr}`))
    })
  })

const installedVersion = (name: string): string =>
  (JSON.parse(readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string })
    .version

/** The bytes of every file under `dir`. */
const sizeOf = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((total, entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return total + sizeOf(full)
    return entry.isFile() ? total + statSync(full).size : total
  }, 0)

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Cold imports of `specifiers`, one after the other, in a fresh node, timed from inside (ms). */
const coldImport = async (dir: string, specifiers: ReadonlyArray<string>): Promise<number> => {
  const imports = specifiers.map((specifier) => `await import(${JSON.stringify(specifier)});`).join(" ")
  const script = `const t = performance.now(); ${imports} process.stdout.write(String(performance.now() - t))`
  return Number(await exec(process.execPath, ["--input-type=module", "-e", script], dir))
}

const MB = 1024 * 1024

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const work = mkdtempSync(path.join(tmpdir(), "throttlekit-footprint-"))
  try {
    progress("  footprint: npm pack (builds the package)")
    await exec("npm", ["pack", "--pack-destination", work, "--loglevel=error"], ROOT)
    const tarball = path.join(work, readdirSync(work).find((name) => name.endsWith(".tgz")) ?? "")
    const app = path.join(work, "memory-app")
    cpSync(POLICIES, path.join(app, "policies.yaml"))
    const manifest = { name: "memory-app", private: true, type: "module" }
    writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({
        ...manifest,
        dependencies: { effect: installedVersion("effect"), "throttlekit-effect": tarball }
      })
    )
    progress("  footprint: installing a Memory-only app (effect + the package)")
    await exec("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], app)
    const modules = path.join(app, "node_modules")
    const total = sizeOf(modules) / MB
    const effectOnly = sizeOf(path.join(modules, "effect")) / MB
    const installed = readdirSync(modules).filter((name) => !name.startsWith("."))

    const samples = plan.rounds * 3
    const kinds = { effect: ["effect"], effectThenRoot: ["effect", "throttlekit-effect"], root: ["throttlekit-effect"] }
    const times: Record<keyof typeof kinds, Array<number>> = { effect: [], effectThenRoot: [], root: [] }
    const order = Object.keys(kinds) as Array<keyof typeof kinds>
    progress(`  footprint: ${samples} cold imports of each kind`)
    for (let i = 0; i < samples; i++) {
      // Rotate which kind goes first, so a burst of machine load falls on each alike.
      for (let k = 0; k < order.length; k++) {
        const kind = order[(i + k) % order.length]!
        times[kind].push(await coldImport(app, kinds[kind]))
      }
    }
    const effectMs = median(times.effect)
    const withRootMs = median(times.effectThenRoot)
    const comparisons: Array<Comparison> = [
      {
        name: "footprint.memoryAppMB",
        value: total,
        unit: "MB",
        detail: `node_modules of a Memory-only app: ${installed.join(", ")} (effect alone ${effectOnly.toFixed(1)} MB)`,
        headline: false
      },
      {
        name: "footprint.effectImportMs",
        value: effectMs,
        unit: "ms",
        detail: `cold import("effect"), median of ${samples} fresh processes`,
        headline: false
      },
      {
        name: "footprint.effectThenRootImportMs",
        value: withRootMs,
        unit: "ms",
        detail: `cold import("effect") then import("throttlekit-effect"), median of ${samples}`,
        headline: false
      },
      {
        name: "footprint.rootImportMs",
        value: median(times.root),
        unit: "ms",
        detail: `cold import("throttlekit-effect") alone (it loads effect's modules by subpath), median of ${samples}`,
        headline: false
      },
      {
        name: "footprint.rootImportAddsMs",
        value: withRootMs - effectMs,
        unit: "ms",
        detail: "what the root entry adds to an Effect app's cold start",
        target: { op: "<=", value: 150 },
        headline: false
      }
    ]
    return { results: [], comparisons, skipped: [] }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** The footprint section. */
export const footprint: Section = { name: "footprint", run }
