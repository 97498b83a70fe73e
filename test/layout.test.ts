/**
 * The layering of DESIGN.md, checked on the import graph: imports only go downward (entry points →
 * server → doors and clients → front → engine → domain). Every import and re-export (static, dynamic and
 * `import("…")` types) of every file under `src/` is read with the TypeScript parser; a file may import
 * its own layer or a lower one, never a higher one. Doors (`src/layers`) and clients (`src/clients`) are
 * siblings that never import each other.
 *
 * Today's exceptions are listed below, each with its reason; an exception that no longer occurs fails
 * the test too, so the list can only shrink. Every file must fall in a layer: a new folder is placed
 * here on purpose, not by default.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const SRC = path.join(ROOT, "src")

/** The layers, lowest first; a file's layer is its index here. */
const LAYERS = ["domain", "engine", "front", "doors and clients", "server", "entry points"] as const
type Layer = (typeof LAYERS)[number]

/**
 * The layer of a file, by its path relative to the repository root (`src/…`), or `undefined` when no
 * rule places it (which fails the test).
 */
const layerOf = (file: string): Layer | undefined => {
  const rel = file.slice("src/".length)
  // The public entries (the root barrel and the subpath ones) and `npm start`: they may import anything.
  if (rel === "index.ts" || rel === "main.ts" || rel.startsWith("entries/")) return "entry points"
  // `Decision`, `Errors`, `Policy`, `Validate`, the policy set (`PolicySet`), the file loader (`PolicyFile`)…
  if (!rel.includes("/")) return "domain"
  // The Monitor's data (Schemas that import nothing of ours): the `Monitor` service is written in its
  // terms, as `RateLimiter` is in `Decision`'s, and both its client and its server decode with it.
  if (rel === "monitor/Snapshot.ts") return "domain"
  const top = rel.slice(0, rel.indexOf("/"))
  switch (top) {
    case "policyFile": // the file loader's parts: text → raw value, raw value → `PolicySet`, their problems
      return "domain"
    case "engine":
      return "engine"
    case "services":
    case "internal":
      return "front"
    case "layers": // the doors (Memory with its key store and `Local`, Redis, Service)
    case "clients": // the Fleet and Monitor clients
    case "redis":
    case "grpc":
    case "coordinator":
    case "http":
    case "fleet": // client side: the lease spender
      return "doors and clients"
    case "server":
      return "server"
    default:
      return undefined
  }
}

/**
 * Imports allowed against the rule, each with why. Keyed by importer and imported file (paths from the
 * repository root, `.ts`).
 */
const EXCEPTIONS: ReadonlyArray<{ readonly from: string; readonly to: string; readonly reason: string }> = []

/** Every `.ts` file under `dir`, as paths from the repository root with `/` separators. */
const sourceFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return entry.name.endsWith(".ts") ? [path.relative(ROOT, full).split(path.sep).join("/")] : []
  })

/** The module specifiers `file` imports or re-exports: static, dynamic and in `import("…")` types. */
const specifiersOf = (file: string): Array<string> => {
  const source = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), "utf8"), ts.ScriptTarget.Latest)
  const found: Array<string> = []
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text)
    } else if (
      ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined && ts.isStringLiteral(node.arguments[0])
    ) {
      found.push(node.arguments[0].text)
    } else if (
      ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)
    ) {
      found.push(node.argument.literal.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** The repository file a relative specifier of `file` names (`.js` read as `.ts`); others are packages. */
const resolve = (file: string, specifier: string): string | undefined =>
  specifier.startsWith(".")
    ? path.posix.join(path.posix.dirname(file), specifier).replace(/\.js$/, ".ts")
    : undefined

interface Edge {
  readonly from: string
  readonly to: string
}

const files = sourceFiles(SRC).sort()
const edges: ReadonlyArray<Edge> = files.flatMap((from) =>
  specifiersOf(from).flatMap((specifier) => {
    const to = resolve(from, specifier)
    return to === undefined ? [] : [{ from, to }]
  })
)

const rank = (layer: Layer): number => LAYERS.indexOf(layer)
const isException = (edge: Edge) => EXCEPTIONS.some((e) => e.from === edge.from && e.to === edge.to)
const folderOf = (file: string) => file.split("/")[1]

/** Why `edge` breaks the layering, or `undefined` when it does not. */
const breach = (edge: Edge): string | undefined => {
  const from = layerOf(edge.from)
  const to = layerOf(edge.to)
  if (from === undefined || to === undefined) return undefined // reported by the placement test
  if (rank(to) > rank(from)) return `${edge.from} (${from}) imports ${edge.to} (${to})`
  const sides = new Set([folderOf(edge.from), folderOf(edge.to)])
  if (sides.has("layers") && sides.has("clients")) {
    return `${edge.from} imports ${edge.to}: doors and clients are siblings`
  }
  return undefined
}

describe("layout", () => {
  it("reads the import graph of src", () => {
    expect(files).toContain("src/services/RateLimiter.ts")
    // A multi-line import, a type import and an `export * as` re-export are all seen.
    expect(edges).toContainEqual({ from: "src/services/RateLimiter.ts", to: "src/services/RateLimiterStore.ts" })
    expect(edges).toContainEqual({ from: "src/services/RateLimiter.ts", to: "src/PolicySet.ts" })
    expect(edges).toContainEqual({ from: "src/index.ts", to: "src/layers/MemoryBackend.ts" })
  })

  it("places every file of src in a layer", () => {
    expect(files.filter((file) => layerOf(file) === undefined)).toEqual([])
  })

  it("imports only go downward (doors and clients never import each other)", () => {
    const breaches = edges.filter((edge) => !isException(edge)).flatMap((edge) => {
      const why = breach(edge)
      return why === undefined ? [] : [why]
    })
    expect(breaches).toEqual([])
  })

  it("lists only exceptions that still occur", () => {
    const stale = EXCEPTIONS.filter((e) => !edges.some((edge) => edge.from === e.from && edge.to === e.to))
    expect(stale.map((e) => `${e.from} → ${e.to}`)).toEqual([])
    for (const e of EXCEPTIONS) expect(breach(e), `${e.from} → ${e.to} needs no exception`).toBeDefined()
  })
})
