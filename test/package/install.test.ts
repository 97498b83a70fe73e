/**
 * The package as an app gets it: `npm pack` (which builds through `prepack`), the tarball installed into
 * fresh temporary apps outside the repository, each with its own package.json and `effect` as its own
 * dependency, then typechecked with `tsc` and run with plain `node` — no tsx, no paths, nothing of the
 * repository but the tarball.
 *
 * - A Memory-only app has only `effect` beside the package: no ioredis, no gRPC, no @effect/platform in
 *   its node_modules, so the root entry loading any of them would fail the run.
 * - A full app (the optional peers installed) runs a Redis program against a real `redis-server` and an
 *   HTTP program making real requests to a Node server.
 * - The programs (test/package/app) import public entries only; a deep import fails to typecheck, and is
 *   refused at run time by the `exports` map.
 *
 * Installs use the npm cache first (`--prefer-offline`), pinned to the versions this repository tests
 * with, so they match what `npm ci` just fetched.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const APP_FILES = fileURLToPath(new URL("./app", import.meta.url))
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc")
const manifest = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  readonly name: string
  readonly version: string
  readonly exports: Record<string, unknown>
}

/** The version of `name` installed in this repository (what the suite tests with). */
const installedVersion = (name: string): string =>
  (JSON.parse(readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string })
    .version

interface Ran {
  readonly status: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a command to its end (asynchronously: a synchronous spawn would block the vitest worker for
 * minutes), with the exit status and both outputs.
 */
const run = (command: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> =>
  new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: 240_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ status: code, stdout, stderr })
      }
    )
  })

const npm = process.platform === "win32" ? "npm.cmd" : "npm"

/** What a failed step printed, for the assertion message. */
const output = (result: Ran): string => `${result.stdout}\n${result.stderr}`.trim()

const work = mkdtempSync(path.join(tmpdir(), "throttlekit-pack-"))
let tarball = ""
let redis: RedisServerHandle | undefined

/** A fresh app in `work/name` with the given dependencies (the tarball added), installed. */
const makeApp = async (name: string, dependencies: ReadonlyArray<string>): Promise<string> => {
  const dir = path.join(work, name)
  cpSync(APP_FILES, dir, { recursive: true })
  const pins = Object.fromEntries(dependencies.map((dep) => [dep, installedVersion(dep)]))
  writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify({ name, private: true, type: "module", dependencies: { ...pins, [manifest.name]: tarball } })
  )
  const install = await run(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], dir)
  expect(install.status, output(install)).toBe(0)
  return dir
}

/**
 * `tsc` on the app's own tsconfig over `files` only (with `options` on top); the JavaScript lands in the
 * app's `dist/`.
 */
const tsc = (dir: string, files: ReadonlyArray<string>, options: Record<string, unknown> = {}): Promise<Ran> => {
  // `tsc -p` takes no file list: write a tsconfig that names them.
  const base = JSON.parse(readFileSync(path.join(dir, "tsconfig.json"), "utf8")) as {
    readonly compilerOptions: Record<string, unknown>
  }
  const config = { compilerOptions: { ...base.compilerOptions, ...options }, files }
  writeFileSync(path.join(dir, "tsconfig.build.json"), JSON.stringify(config))
  return run(process.execPath, [TSC, "-p", "tsconfig.build.json"], dir)
}

const compile = async (dir: string, files: ReadonlyArray<string>, options: Record<string, unknown> = {}) => {
  const result = await tsc(dir, files, options)
  expect(result.status, output(result)).toBe(0)
}

/** Runs a compiled program and reads the one JSON line it prints. */
const runProgram = async (dir: string, file: string, env: NodeJS.ProcessEnv = {}): Promise<unknown> => {
  const result = await run(process.execPath, [path.join("dist", file)], dir, env)
  expect(result.status, output(result)).toBe(0)
  return JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "")
}

/** Every module specifier a program file imports. */
const importsOf = (file: string): Array<string> =>
  [...readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)\b[^"']*["']([^"']+)["']/gm)].map((m) => m[1] ?? "")

const publicEntries = Object.keys(manifest.exports)
  .filter((entry) => entry !== "./package.json")
  .map((entry) => entry === "." ? manifest.name : `${manifest.name}/${entry.slice(2)}`)

const ENTRY_FILES = [
  "index",
  "entries/redis",
  "entries/service",
  "entries/fleet",
  "entries/monitor",
  "entries/server",
  "entries/http"
]

beforeAll(async () => {
  const pack = await run(npm, ["pack", "--pack-destination", work, "--loglevel=error"], ROOT)
  expect(pack.status, output(pack)).toBe(0)
  const file = readdirSync(work).find((name) => name.endsWith(".tgz"))
  expect(file, "npm pack wrote no tarball").toBeDefined()
  tarball = path.join(work, file ?? "")
  redis = await startRedisServer()
}, 300_000)

afterAll(async () => {
  await redis?.close()
  rmSync(work, { recursive: true, force: true })
})

describe("the packed tarball", () => {
  it("holds the JavaScript, the types, the Lua and the proto, and no sources or tests", async () => {
    const list = await run("tar", ["-tzf", tarball], work)
    expect(list.status, output(list)).toBe(0)
    const files = list.stdout.split("\n").filter((line) => line !== "").map((line) => line.replace(/^package\//, ""))
    for (const entry of [...ENTRY_FILES, "entries/bin"]) {
      expect(files).toContain(`dist/${entry}.js`)
      expect(files).toContain(`dist/${entry}.d.ts`)
    }
    expect(files).toContain("vendor/lua/manifest.json")
    expect(files).toContain("vendor/lua/gcra.check.lua")
    expect(files).toContain("proto/throttlekit.proto")
    const sources = files.filter((f) =>
      /^(src|test|bench|examples)\//.test(f) || (f.endsWith(".ts") && !f.endsWith(".d.ts"))
    )
    expect(sources).toEqual([])
  })
})

describe("a Memory-only app (effect and the package, nothing else)", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await makeApp("memory-app", ["effect", "@types/node"])
  }, 300_000)

  it("installs no driver: no ioredis, gRPC or @effect/platform", () => {
    const installed = readdirSync(path.join(dir, "node_modules"))
    expect(installed).toContain("effect")
    expect(installed).not.toContain("ioredis")
    expect(installed).not.toContain("@grpc")
    expect(installed).not.toContain("@effect")
  })

  it("typechecks (declarations included) and runs a Memory program written against the root entry", async () => {
    await compile(dir, ["memory.ts"])
    expect(await runProgram(dir, "memory.js")).toEqual({
      allowed: [true, true, false],
      llmRemaining: 360,
      held: [true, false],
      fault: "PolicyNotFound"
    })
  })

  it("a deep import past the entries does not typecheck, and node refuses it", async () => {
    writeFileSync(
      path.join(dir, "deep.ts"),
      `import * as Deep from "${manifest.name}/dist/index.js"\nconsole.log(Deep)\n`
    )
    const checked = await tsc(dir, ["deep.ts"])
    expect(checked.status).not.toBe(0)
    expect(output(checked)).toMatch(/deep\.ts.*TS2307/)
    const ran = await run(process.execPath, [
      "--input-type=module",
      "-e",
      `await import("${manifest.name}/dist/index.js")`
    ], dir)
    expect(ran.status).not.toBe(0)
    expect(ran.stderr).toContain("ERR_PACKAGE_PATH_NOT_EXPORTED")
  })

  it("the server executable names the peers it lacks in one line", async () => {
    const ran = await run(path.join(dir, "node_modules", ".bin", "throttlekit-effect"), ["--version"], dir)
    expect(ran.status).toBe(1)
    expect(ran.stderr.trim()).toBe(
      "throttlekit-effect: the server needs @effect/platform, @effect/platform-node, @grpc/grpc-js, ioredis; " +
        "install with: npm install @effect/platform @effect/platform-node @grpc/grpc-js ioredis"
    )
  })
})

describe("a full app (the optional peers installed)", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await makeApp("full-app", [
      "effect",
      "@types/node",
      "@effect/platform",
      "@effect/platform-node",
      "ioredis",
      "@grpc/grpc-js"
    ])
    // @effect/platform-node's own declarations need @types/ws, which an app of ours does not install.
    await compile(dir, ["memory.ts", "redis.ts", "http.ts"], { skipLibCheck: true })
  }, 300_000)

  it("every public entry's declarations typecheck, with skipLibCheck off", async () => {
    const imports = publicEntries.map((entry, i) => `import * as E${i} from "${entry}"\nconsole.log(E${i})\n`)
    writeFileSync(path.join(dir, "entries.ts"), imports.join(""))
    const checked = await tsc(dir, ["entries.ts"], { noEmit: true })
    expect(checked.status, output(checked)).toBe(0)
    // tsc reads every dependency's declarations here (skipLibCheck off): tens of seconds on a loaded machine.
  }, 240_000)

  it("its programs import public entries only", () => {
    for (const file of ["memory.ts", "redis.ts", "http.ts"]) {
      const ours = importsOf(path.join(APP_FILES, file)).filter((s) => s.startsWith(manifest.name))
      expect(ours.length, `${file} imports the package`).toBeGreaterThan(0)
      for (const specifier of ours) expect(publicEntries, `${file}: ${specifier}`).toContain(specifier)
    }
  })

  it("runs a Redis program against a real redis-server", async () => {
    expect(await runProgram(dir, "redis.js", { REDIS_URL: redis?.url ?? "" })).toEqual({
      allowed: [true, true, false],
      llmRemaining: 360
    })
  })

  it("runs an HTTP program: real requests, the third one refused with 429 and Retry-After", async () => {
    const answers = (await runProgram(dir, "http.js")) as ReadonlyArray<{ status: number; retryAfter: string | null }>
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429])
    expect(Number(answers[2]?.retryAfter)).toBeGreaterThan(0)
  })

  it("the server executable runs: --version prints the package's version", async () => {
    const ran = await run(path.join(dir, "node_modules", ".bin", "throttlekit-effect"), ["--version"], dir)
    expect(ran.status, output(ran)).toBe(0)
    expect(ran.stdout.trim()).toContain(manifest.version)
  })
})
