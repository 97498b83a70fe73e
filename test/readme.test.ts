/**
 * Every TypeScript block of the README typechecks as a whole module, as a reader would paste it: each
 * ```ts block is written to its own file and compiled with the repository's compiler options, the package
 * name resolving to `src` through the tsconfig paths (the same names the published entries export). A
 * block that only makes sense as a fragment is not TypeScript in the README.
 */
import { describe, expect, it } from "@effect/vitest"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { fencedBlocks } from "./support/markdown.js"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const OUT = path.join(ROOT, ".tmp", "readme-snippets")

const compilerOptions = (): ts.CompilerOptions => {
  const configPath = path.join(ROOT, "tsconfig.json")
  const read = ts.readConfigFile(configPath, (file) => ts.sys.readFile(file))
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT)
  return { ...parsed.options, noEmit: true, noUnusedLocals: false }
}

const snippets = fencedBlocks(readFileSync(path.join(ROOT, "README.md"), "utf8"), ["ts", "typescript"])

describe("README", () => {
  it("has TypeScript blocks to check", () => {
    expect(snippets.length).toBeGreaterThanOrEqual(4)
  })

  it("every TypeScript block typechecks as its own module", () => {
    rmSync(OUT, { recursive: true, force: true })
    mkdirSync(OUT, { recursive: true })
    const files = snippets.map((snippet) => {
      const file = path.join(OUT, `readme-line-${snippet.line}.ts`)
      writeFileSync(file, snippet.code)
      return file
    })
    const program = ts.createProgram(files, compilerOptions())
    const problems = files.flatMap((file) =>
      ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((diagnostic) => {
        const at = diagnostic.file !== undefined && diagnostic.start !== undefined
          ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
          : undefined
        const where = at === undefined ? path.basename(file) : `${path.basename(file)}:${at.line + 1}`
        return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")}`
      })
    )
    expect(problems).toEqual([])
  }, 120_000)
})
