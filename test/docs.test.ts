/**
 * The API reference in `docs/` is what `npm run docs` (@effect/docgen) makes of the doc comments today,
 * and every `@example` in them compiles and runs.
 *
 * The test runs `npm run docs` once into a scratch folder beside `docs/` (docgen rewrites an example's
 * imports of the package to `../../src`, so its output folder must sit at the repository root). docgen
 * fails on a missing `@since`, on an example that does not typecheck (tsc, docgen.json's
 * `examplesCompilerOptions`) and on one that throws when run (tsx). Then the scratch output must equal
 * the committed `docs/`, file for file; every example the pages show must be one docgen checked (it
 * skips those on a class's own comment); and every module the package's entries re-export must have its
 * page (docgen.json's `exclude` leaves out the internal ones only).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const DOCS = path.join(ROOT, "docs")
const SCRATCH_NAME = ".docs-check"
const SCRATCH = path.join(ROOT, SCRATCH_NAME)

interface Run {
  readonly ok: boolean
  readonly output: string
}

const runDocgen = (): Promise<Run> =>
  new Promise((resolve) => {
    // The output folder is given as DOCGEN_OUT: docgen 0.5 drops its first two command-line arguments.
    execFile(
      "npm",
      ["run", "--silent", "docs"],
      { cwd: ROOT, env: { ...process.env, DOCGEN_OUT: SCRATCH_NAME }, timeout: 280_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ ok: error === null, output: `${stdout}\n${stderr}` })
    )
  })

/**
 * Every file under `dir`, as paths relative to it with `/` separators, sorted; not `examples/`, docgen's
 * scratch copies of the examples (git-ignored, left behind only by a failed run).
 */
const filesUnder = (dir: string): Array<string> =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join("/"))
    .filter((file) => !file.startsWith("examples/"))
    .sort()

/** The `src` modules the entries re-export, transitively (`src/…` paths). */
const publicModules = (): Array<string> => {
  const entries = [
    "src/index.ts",
    ...readdirSync(path.join(ROOT, "src", "entries"))
      .filter((name) => name.endsWith(".ts") && name !== "bin.ts")
      .map((name) => `src/entries/${name}`)
  ]
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const source = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), "utf8"), ts.ScriptTarget.Latest)
    for (const statement of source.statements) {
      if (
        ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined &&
        ts.isStringLiteral(statement.moduleSpecifier) && statement.moduleSpecifier.text.startsWith(".")
      ) {
        const target = path.posix.join(path.posix.dirname(file), statement.moduleSpecifier.text)
        visit(target.replace(/\.js$/, ".ts"))
      }
    }
  }
  entries.forEach(visit)
  return [...seen].sort()
}

let run: Run = { ok: false, output: "docgen did not run" }

beforeAll(async () => {
  rmSync(SCRATCH, { recursive: true, force: true })
  run = await runDocgen()
}, 300_000)

afterAll(() => {
  rmSync(SCRATCH, { recursive: true, force: true })
})

describe("API reference (docs/)", () => {
  it("docgen succeeds: every export has @since, every @example typechecks and runs", () => {
    expect(run.ok, run.output).toBe(true)
  })

  it("the committed docs/ is what docgen generates (run `npm run docs` after changing a doc comment)", () => {
    expect(run.ok, run.output).toBe(true)
    const generated = filesUnder(SCRATCH)
    expect(filesUnder(DOCS)).toEqual(generated)
    const stale = generated.filter((file) =>
      readFileSync(path.join(SCRATCH, file), "utf8") !== readFileSync(path.join(DOCS, file), "utf8")
    )
    expect(stale).toEqual([])
  })

  it("every example the pages show is one docgen typechecked and ran", () => {
    expect(run.ok, run.output).toBe(true)
    const found = /(\d+) example\(s\) found/.exec(run.output)
    expect(found, run.output).not.toBeNull()
    const shown = filesUnder(path.join(SCRATCH, "modules")).reduce(
      (count, file) =>
        count + (readFileSync(path.join(SCRATCH, "modules", file), "utf8").match(/^\*\*Example\*\*$/gm) ?? []).length,
      0
    )
    expect(shown).toBeGreaterThanOrEqual(16)
    expect(Number(found?.[1])).toBe(shown)
  })

  it("every module the entries re-export has its page", () => {
    const missing = publicModules().filter((file) =>
      !existsSync(path.join(DOCS, "modules", `${file.slice("src/".length)}.md`))
    )
    expect(missing).toEqual([])
  })
})
