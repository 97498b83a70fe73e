/**
 * Every example runs as a user runs it: a separate Node process (`node --import tsx examples/<name>.ts`,
 * the loader `npx tsx` uses, without npx's start-up cost), on the embedded default, on a private
 * `redis-server` (`--redis`) and on our ThrottleKit server started from its CLI (`--service`). Each must
 * exit 0 and print the line that shows its axis worked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { startServer } from "../server/cliProcess.js"
import { redisServer } from "../support/redisServer.js"
import { FetchFailed, request } from "./support.js"

const repoRoot = path.resolve(import.meta.dirname, "../..")

/** How an example process ended. */
interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `examples/<script>` with `args` to completion (killed if the test is interrupted). */
const runExample = (script: string, args: ReadonlyArray<string> = []) =>
  Effect.async<Ran>((resume) => {
    const child = spawn(process.execPath, ["--import", "tsx", `examples/${script}`, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** The line each example prints when its axis did what it shows. */
const proof: Record<string, ReadonlyArray<RegExp>> = {
  "rate.ts": [
    /DENY {2}remaining=0 limit=5 retryAfterMs=\d+/,
    /rate example done: \d of alice's 7 burst requests were allowed/
  ],
  "llm-budget.ts": [/budget reached: \d+ tokens streamed in \d+ completions/, /a further debit is refused/],
  "concurrency.ts": [
    /all 8 jobs done; peak in flight [123] \(ceiling 3\)/,
    /a failing job released its slot as dropped/,
    /the next admission is held/,
    /bound by the rate axis/
  ],
  "waiting.ts": [
    /all 50 jobs done; peak in flight [1-5] \(ceiling 5\)/,
    /the store answered \d+ acquires: 50 held/,
    /a 6th request on "api" waited \d+ ms, then was allowed/,
    /a request willing to wait 1 ms: RateLimited/
  ],
  "http-server.ts": [
    /listening on http:\/\/127\.0\.0\.1:\d+/,
    /GET \/export -> 429 .*retry-after: \d+/,
    /self-test passed/
  ]
}

const selfTestArgs = (script: string): ReadonlyArray<string> => (script === "http-server.ts" ? ["--self-test"] : [])

/**
 * Runs every example with `flags` and checks exit code and proof lines. On a shared door (Redis, a
 * server) the examples run one at a time: `concurrency` and `http-server` both use the "workers" pool,
 * and two of them at once would fill each other's ceiling.
 */
const runAll = (flags: ReadonlyArray<string>, expectedDoor: RegExp) =>
  Effect.forEach(Object.entries(proof), ([script, lines]) =>
    Effect.gen(function*() {
      const ran = yield* runExample(script, [...flags, ...selfTestArgs(script)])
      const context = `${script} ${flags.join(" ")}\nstdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`
      expect(ran.code, context).toBe(0)
      expect(ran.stdout, context).toMatch(expectedDoor)
      for (const line of lines) expect(ran.stdout, context).toMatch(line)
    }), { concurrency: flags.length === 0 ? 2 : 1, discard: true })

describe("examples", () => {
  it.live("each runs to completion on the embedded default", () => runAll([], /using the embedded Memory door/), {
    timeout: 240_000
  })

  it.scopedLive("each runs on Redis with --redis URL", () =>
    Effect.gen(function*() {
      const redis = yield* redisServer
      yield* runAll(["--redis", redis.url], /using the Redis door at redis:\/\/127\.0\.0\.1:\d+/)
    }), { timeout: 240_000 })

  it.scopedLive("each runs against a ThrottleKit server with --service host:port", () =>
    Effect.gen(function*() {
      const server = yield* startServer(["--config", "examples/policies.yaml", "--port", "0"])
      yield* runAll(["--service", server.address], /using the ThrottleKit server at 127\.0\.0\.1:\d+/)
    }), { timeout: 240_000 })

  it.live("fleet and monitor run against their own embedded server", () =>
    Effect.forEach(
      [
        ["fleet.ts", /fleet example done: \d+ of 40 leased checks were allowed/],
        ["monitor.ts", /monitor example done: [1-9]\d* denials watched live, [1-9]\d* in the snapshot/]
      ] as const,
      ([script, done]) =>
        Effect.gen(function*() {
          const ran = yield* runExample(script, [])
          const context = `${script}\nstdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`
          expect(ran.code, context).toBe(0)
          expect(ran.stdout, context).toMatch(done)
        }),
      { discard: true }
    ), { timeout: 120_000 })

  it.live(
    "the dispatcher runs one by name; an unknown name or flag is a usage error (exit 2)",
    () =>
      Effect.gen(function*() {
        const scripts = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")).scripts
        expect(scripts.example).toBe("tsx examples/run.ts")
        const byName = yield* runExample("run.ts", ["llm-budget"])
        expect(byName.code, byName.stderr).toBe(0)
        expect(byName.stdout).toMatch(/budget reached/)
        const unknown = yield* runExample("run.ts", ["no-such-example"])
        expect(unknown.code).toBe(2)
        expect(unknown.stderr).toMatch(
          /usage: npm run example -- <rate\|llm-budget\|concurrency\|waiting\|fleet\|monitor\|http-server>/
        )
        const badFlag = yield* runExample("rate.ts", ["--redis"])
        expect(badFlag.code).toBe(2)
        expect(badFlag.stderr).toMatch(/--redis needs a value/)
      }),
    { timeout: 120_000 }
  )

  it.live("http-server without --self-test serves on its port until interrupted", () =>
    Effect.gen(function*() {
      const child = spawn(process.execPath, ["--import", "tsx", "examples/http-server.ts", "--port", "0"], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL")))
      let stdout = ""
      const url = yield* Effect.async<string>((resume) => {
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString()
          const match = /listening on (http:\/\/\S+)/.exec(stdout)
          if (match !== null && match[1] !== undefined) resume(Effect.succeed(match[1]))
        })
      })
      const reply = yield* request(`${url}/`)
      expect(reply.status).toBe(200)
      expect(reply.body).toBe("hello from a rate-limited server\n")
      expect(reply.headers.get("ratelimit-policy")).toBe("\"search\";q=20;w=10")
      const exited = yield* Effect.async<number | null>((resume) => {
        child.on("close", (code) => resume(Effect.succeed(code)))
        child.kill("SIGINT")
      })
      expect(exited).toBe(0)
      const after = yield* Effect.flip(request(`${url}/`))
      expect(after).toBeInstanceOf(FetchFailed)
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
