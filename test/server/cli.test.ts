/**
 * The server as a user runs it: `throttlekit-effect serve` in its own process, on a free loopback port,
 * exercised through `ServiceBackend`.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Redacted, Schedule } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { Monitor } from "../../src/services/Monitor.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { redisServer } from "../support/redisServer.js"
import { CliFailure, CliServer, cliServerLayer, repoRoot, runToEnd, startServer, tempFile } from "./cliProcess.js"

// The token budget's window is 30 days: a test debits it three times on the real clock, and an hour's
// window would roll over at the top of the hour.
const policies = `
limiters:
  api:
    strategy: gcra
    limit: 5
    period: 1h
    burst: 5
  tokens:
    tokenBudget:
      budget: 100
      windowMs: 30d
  pool:
    concurrency:
      algorithm: fixed
      minLimit: 3
      maxLimit: 3
  unified:
    strategy: gcra
    limit: 1
    period: 1h
    burst: 1
    concurrency:
      algorithm: fixed
      minLimit: 2
      maxLimit: 2
  keeper:
    concurrency:
      algorithm: fixed
      minLimit: 1
      maxLimit: 1
  abandoned:
    concurrency:
      algorithm: fixed
      minLimit: 2
      maxLimit: 2
`

const policyFile = tempFile("policies.yaml", policies)
/** Runs the CLI entry point (`node --import tsx src/server/bin.ts <args>`) to completion. */
const runCli = (args: ReadonlyArray<string>) =>
  runToEnd(process.execPath, ["--import", "tsx", "src/server/bin.ts", ...args])

/** Every descendant of `pid` (children first-found, then theirs), from `ps --ppid`. */
const descendants = (pid: number): ReadonlyArray<number> => {
  const out = spawnSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" }).stdout
  const children = out.split(/\s+/).filter((field) => field !== "").map(Number)
  return children.flatMap((child) => [child, ...descendants(child)])
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const fresh = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

/** Runs `program` against the shared CLI server through a fresh ServiceBackend. */
const viaService = <A, E>(program: Effect.Effect<A, E, RateLimiter>) =>
  Effect.flatMap(CliServer, (server) => Effect.provide(program, ServiceBackend.layer({ target: server.address })))

describe("throttlekit-effect serve (the CLI in its own process)", () => {
  layer(cliServerLayer(["--config", policyFile, "--port", "0"]), { timeout: 120_000, excludeTestServices: true })(
    (it) => {
      it.effect("prints the bound address, store, security and policy names", () =>
        Effect.gen(function*() {
          const server = yield* CliServer
          expect(server.port).toBeGreaterThan(0)
          expect(server.startupLine).toBe(
            `throttlekit-effect listening on 127.0.0.1:${server.port} [store=memory, insecure, lease-ttl=2000ms, fail=open] ` +
              "(6 policies: api, tokens, pool, unified, keeper, abandoned)"
          )
        }))

      it.effect("a cold GCRA burst of 5 admits 5 and denies the 6th with a retry hint", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("burst")
          const decisions = yield* Effect.forEach(Array.from({ length: 6 }), () => limiter.check("api", key))
          expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false])
          expect(decisions.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0])
          expect(decisions[5]!.retryAfterMs).toBeGreaterThan(0)
          expect(decisions[5]!.limit).toBe(5)
        })))

      it.effect("keys are independent", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("a")
          yield* limiter.check("api", a, 5)
          expect((yield* limiter.check("api", a)).allowed).toBe(false)
          const b = yield* limiter.check("api", fresh("b"))
          expect([b.allowed, b.remaining]).toEqual([true, 4])
        })))

      it.effect("a token budget runs out", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("budget")
          const first = yield* limiter.debit("tokens", key, 60)
          expect([first.allowed, first.remaining, first.limit]).toEqual([true, 40, 100])
          const crossing = yield* limiter.debit("tokens", key, 50)
          expect([crossing.allowed, crossing.remaining]).toEqual([true, 0])
          const refused = yield* limiter.debit("tokens", key, 1)
          expect(refused.allowed).toBe(false)
          expect(refused.retryAfterMs).toBeGreaterThan(0)
        })))

      it.effect("an unknown policy is PolicyNotFound, naming the configured policies", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const error = yield* Effect.flip(limiter.check("nope", "k"))
          expect(error._tag).toBe("PolicyNotFound")
          if (error._tag === "PolicyNotFound") {
            expect(error.policy).toBe("nope")
            expect(error.configured).toEqual(["api", "tokens", "pool", "unified", "keeper", "abandoned"])
          }
        })))

      it.effect("admit on a rate limiter is OperationNotSupported", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const error = yield* Effect.flip(Effect.scoped(limiter.admit("api", fresh("x"))))
          expect(error._tag).toBe("OperationNotSupported")
          if (error._tag === "OperationNotSupported") expect([error.policy, error.operation]).toEqual(["api", "admit"])
        })))

      it.effect("a bad cost is InvalidArgument on the wire too (negative costs are not coerced to 1)", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const error = yield* Effect.flip(limiter.check("api", fresh("neg"), -3))
          expect(error._tag).toBe("InvalidArgument")
        })))

      it.effect("a concurrency ceiling of 3 holds, releases and re-admits", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          yield* Effect.scoped(Effect.gen(function*() {
            const held = yield* Effect.forEach([1, 2, 3], () => limiter.admit("pool", fresh("p")))
            expect(held.map((a) => a.held)).toEqual([true, true, true])
            const fourth = yield* Effect.scoped(limiter.admit("pool", fresh("p")))
            expect([fourth.held, fourth.bindingAxis, fourth.decision.allowed]).toEqual([false, "concurrency", false])
          }))
          const again = yield* Effect.scoped(Effect.forEach([1, 2, 3], () => limiter.admit("pool", fresh("p"))))
          expect(again.every((a) => a.held)).toBe(true)
        })))

      it.effect("a unified admitter binds on concurrency before rate", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("ua")
          yield* Effect.scoped(Effect.gen(function*() {
            expect((yield* limiter.admit("unified", a)).held).toBe(true)
            expect((yield* limiter.admit("unified", fresh("ub"))).held).toBe(true)
            // Both axes would refuse `a` now (its one unit is spent, and the pool is full): concurrency binds.
            const both = yield* Effect.scoped(limiter.admit("unified", a))
            expect([both.held, both.bindingAxis]).toEqual([false, "concurrency"])
          }))
          // With the slots back, only the rate axis refuses `a`.
          const rateOnly = yield* Effect.scoped(limiter.admit("unified", a))
          expect([rateOnly.held, rateOnly.bindingAxis]).toEqual([false, "rate"])
          expect(rateOnly.decision.retryAfterMs).toBeGreaterThan(0)
        })))

      it.effect("a kept-alive lease survives a 3 s hold past its 2 s TTL", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          yield* Effect.scoped(Effect.gen(function*() {
            const admission = yield* limiter.admit("keeper", fresh("k"), { keepAlive: true })
            expect(admission.held).toBe(true)
            yield* Effect.sleep(Duration.seconds(3))
            expect(admission.reclaimed).toBe(false)
            const beat = yield* limiter.leases.heartbeat([admission.leaseId])
            expect(beat.live).toEqual([admission.leaseId])
            const other = yield* Effect.scoped(limiter.admit("keeper", fresh("k")))
            expect([other.held, other.bindingAxis]).toEqual([false, "concurrency"])
          }))
          expect((yield* Effect.scoped(limiter.admit("keeper", fresh("k")))).held).toBe(true)
        })), { timeout: 30_000 })

      it.effect("abandoned leases are reclaimed after TTL + sweep", () =>
        viaService(Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const leases = yield* Effect.forEach([1, 2], () => limiter.leases.acquire("abandoned", fresh("gone")))
          expect(leases.every((a) => a.held)).toBe(true)
          const ids = leases.map((a) => a.leaseId)
          expect((yield* Effect.scoped(limiter.admit("abandoned", fresh("x")))).held).toBe(false)
          // TTL 2 s + one 1 s sweep, plus slack; then poll briefly in case the machine is busy.
          yield* Effect.sleep(Duration.millis(3500))
          const admitted = yield* Effect.scoped(limiter.admit("abandoned", fresh("x"))).pipe(
            Effect.filterOrFail((a) => a.held, () => "the abandoned leases are still held" as const),
            Effect.retry({ schedule: Schedule.spaced(Duration.millis(250)), times: 12 })
          )
          expect(admitted.held).toBe(true)
          const beat = yield* limiter.leases.heartbeat(ids)
          expect(beat.live).toEqual([])
          expect(beat.reclaimed).toEqual(ids)
        })), { timeout: 30_000 })
    }
  )

  it.live(
    "a server that hangs mid-run: a check is OutcomeUnknown within the deadline; stopped: ServiceUnavailable",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* startServer(["--config", policyFile, "--port", "0"])
        const program = Effect.gen(function*() {
          const limiter = yield* RateLimiter
          expect((yield* limiter.check("api", fresh("up"))).allowed).toBe(true)

          // Frozen: the call is sent but never answered, so the 1 s deadline ends it. The server may still
          // apply it once it thaws (its deadline runs from when it reads the request): the outcome of
          // this check is unknown, and the error says so.
          server.child.kill("SIGSTOP")
          const hung = yield* Effect.flip(limiter.check("api", fresh("hung"))).pipe(
            Effect.timeout(Duration.seconds(10))
          )
          server.child.kill("SIGCONT")
          expect(hung._tag).toBe("OutcomeUnknown")
          if (hung._tag === "OutcomeUnknown") expect(hung.operation).toBe("check")
          expect((yield* limiter.check("api", fresh("back"))).allowed).toBe(true)

          // Stopped: SIGTERM drains and exits 0; the next call cannot reach it.
          const ended = yield* server.stop
          expect(ended.code).toBe(0)
          expect(ended.stdout).toContain("throttlekit-effect stopped")
          const down = yield* Effect.flip(limiter.check("api", fresh("down"))).pipe(
            Effect.timeout(Duration.seconds(10))
          )
          expect(down._tag).toBe("ServiceUnavailable")
        })
        yield* Effect.provide(program, ServiceBackend.layer({ target: server.address, deadline: "1 second" }))
      })),
    { timeout: 120_000 }
  )

  it.live(
    "serve --store redis keeps state in Redis, shared by two server processes",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const args = ["--config", policyFile, "--port", "0", "--store", "redis", "--redis", redis.url]
        const [one, two] = yield* Effect.all([startServer(args), startServer(args)], { concurrency: 2 })
        expect(one.startupLine).toContain("[store=redis, insecure, lease-ttl=2000ms, fail=open]")
        const key = fresh("shared")
        const viaOne = Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => limiter.check("api", key, 3)),
          ServiceBackend.layer({ target: one.address })
        )
        const viaTwo = Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => Effect.forEach([1, 2, 3], () => limiter.check("api", key))),
          ServiceBackend.layer({ target: two.address })
        )
        expect((yield* viaOne).remaining).toBe(2)
        expect((yield* viaTwo).map((d) => [d.allowed, d.remaining])).toEqual([[true, 1], [true, 0], [false, 0]])
      })),
    { timeout: 180_000 }
  )

  it.live("a bad flag or a bad config exits 1 with a one-line reason", () =>
    Effect.gen(function*() {
      const badConfig = tempFile("bad.yaml", "limiters:\n  api:\n    strategy: gcra\n    limit: -1\n    period: 1s\n")
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        // Every flag rule is unit-tested in Cli.test.ts; here, one of each kind end to end.
        [["--config", policyFile, "--port", "70000"], "--port must be a whole number from 0 to 65535"],
        [["--config", badConfig, "--port", "0"], "limiters.api.limit"],
        [["--config", policyFile, "--port", "0", "--redis", "redis://127.0.0.1:1"], "the Redis store failed to start"],
        [
          ["--config", policyFile, "--port", "0", "--fleet-secret-file", `${policyFile}.absent`],
          `--fleet-secret-file ${policyFile}.absent: cannot read the file (NotFound`
        ]
      ]
      const ended = yield* Effect.forEach(
        cases,
        ([args]) => runToEnd("npx", ["tsx", "src/server/bin.ts", "serve", ...args]),
        { concurrency: 2 }
      )
      ended.forEach((result, i) => {
        const [, reason] = cases[i]!
        expect(result.code).toBe(1)
        expect(result.stdout).toBe("")
        const lines = result.stderr.trimEnd().split("\n")
        expect(lines).toHaveLength(1)
        expect(lines[0]).toMatch(/^throttlekit-effect: /)
        expect(lines[0]).toContain(reason)
      })
    }), { timeout: 180_000 })

  it.live("--version and -V print the package version and exit 0; --help lists them", () =>
    Effect.gen(function*() {
      const pkg: { readonly version: string } = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8"))
      const runs = yield* Effect.forEach(
        [["--version"], ["-V"], ["serve", "--config", policyFile, "--version"]],
        runCli,
        { concurrency: 3 }
      )
      for (const result of runs) {
        expect(result.code).toBe(0)
        expect(result.stderr).toBe("")
        expect(result.stdout).toBe(`${pkg.version}\n`)
      }
      const help = yield* runCli(["--help"])
      expect(help.code).toBe(0)
      expect(help.stdout).toContain("\n  -V, --version              print the version\n")
      for (
        const listed of [
          "--monitor-secret-file FILE",
          "--fleet-secret-file FILE",
          "--redis-file FILE",
          "THROTTLEKIT_MONITOR_SECRET_FILE",
          "THROTTLEKIT_FLEET_SECRET_FILE",
          "THROTTLEKIT_REDIS_URL)",
          "THROTTLEKIT_REDIS_URL_FILE"
        ]
      ) expect(help.stdout).toContain(listed)
    }), { timeout: 120_000 })

  it.live("a mistyped flag never echoes its value (nor a secret one flag too far)", () =>
    Effect.gen(function*() {
      const secret = `s3cr3t-${randomUUID()}`
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["serve", "--config", policyFile, `--monitor-secrets=${secret}`], "unknown argument: --monitor-secrets"],
        [["serve", "--config", policyFile, "--monitor-secrets", secret], "unknown argument: --monitor-secrets"],
        [["serve", "--config", policyFile, `-x=${secret}`], "unknown argument: -x"],
        [
          ["serve", "--config", policyFile, "--fleet-secret", "--monitor-secret", secret],
          "unexpected value at argument 6 (every value follows its flag, e.g. --port 8080)"
        ],
        [[`--fleet-secret=${secret}`, "serve"], "unknown command: \"--fleet-secret\" (expected \"serve\")"],
        [
          ["serve", "--config", policyFile, "--redis", `http://:${secret}@cache:6379`],
          "--redis must be a redis:// or rediss:// URL, but the value has another scheme (not shown: it may hold a password)"
        ]
      ]
      const ended = yield* Effect.forEach(cases, ([args]) => runCli(args), { concurrency: 3 })
      ended.forEach((result, i) => {
        const [, reason] = cases[i]!
        expect(result.code).toBe(1)
        expect(result.stdout).toBe("")
        expect(result.stderr).toBe(`throttlekit-effect: ${reason}\n`)
        expect(result.stderr).not.toContain(secret)
      })
    }), { timeout: 120_000 })

  it.live(
    "serve --monitor-secret-file: the Monitor door demands the file's secret, without its newline, never printed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const secret = `m0n-${randomUUID()}`
        const secretFile = tempFile("monitor-secret", `${secret}\n`)
        const server = yield* startServer(["--config", policyFile, "--port", "0", "--monitor-secret-file", secretFile])
        /** What Monitor.Snapshot answers over loopback to a caller presenting `presented`: "ok" or the error. */
        const snapshot = (presented?: string) =>
          Effect.flatMap(Monitor, (monitor) => monitor.snapshot).pipe(
            Effect.provide(MonitorBackend.layer({
              target: server.address,
              ...(presented === undefined ? {} : { secret: Redacted.make(presented) })
            })),
            Effect.match({ onFailure: (error) => error._tag, onSuccess: () => "ok" })
          )
        // Loopback callers are served without a secret only when the server has none: refused here.
        expect(yield* snapshot()).toBe("Unauthenticated")
        expect(yield* snapshot(`${secret}x`)).toBe("Unauthenticated")
        expect(yield* snapshot(secret)).toBe("ok")
        const ended = yield* server.stop
        expect(ended.code).toBe(0)
        expect(ended.stdout).toContain("throttlekit-effect stopped")
        expect(ended.stdout + ended.stderr).not.toContain(secret)
      })),
    { timeout: 120_000 }
  )

  it.live(
    "`npm run serve` stopped with SIGTERM stops the server too (nothing orphaned)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        let tree: ReadonlyArray<number> = []
        const npm = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn("npm", ["run", "serve", "--", "--config", "examples/policies.yaml", "--port", "0"], {
              cwd: repoRoot,
              stdio: ["ignore", "pipe", "pipe"]
            })
          ),
          (npm: ChildProcess) =>
            Effect.sync(() => {
              // Whatever happens, leave nothing running (an orphan is no longer npm's descendant, so the
              // tree seen while it ran counts too).
              for (const pid of [...tree, ...(npm.pid === undefined ? [] : descendants(npm.pid))]) {
                if (isAlive(pid)) process.kill(pid, "SIGKILL")
              }
              if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL")
            })
        )
        let stdout = ""
        const listening = yield* Deferred.make<void, CliFailure>()
        const exited = yield* Deferred.make<void>()
        npm.stdout!.on("data", (chunk: Buffer) => {
          stdout += chunk.toString()
          if (/throttlekit-effect listening on \S+:\d+ /.test(stdout)) Deferred.unsafeDone(listening, Effect.void)
        })
        npm.on("close", () => {
          Deferred.unsafeDone(exited, Effect.void)
          Deferred.unsafeDone(listening, Effect.fail(new CliFailure({ reason: `npm exited first: ${stdout}` })))
        })
        yield* Deferred.await(listening).pipe(
          Effect.timeoutFail({
            duration: Duration.seconds(90),
            onTimeout: () => new CliFailure({ reason: `no startup line within 90 s: ${stdout}` })
          })
        )
        tree = descendants(npm.pid!)
        const servers = tree.filter((pid) =>
          spawnSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8" }).stdout.includes("src/server/bin.ts")
        )
        expect(servers.length).toBeGreaterThan(0)

        npm.kill("SIGTERM")
        yield* Deferred.await(exited).pipe(Effect.timeout(Duration.seconds(15)))
        const survivors = yield* Effect.sync(() => tree.filter(isAlive)).pipe(
          Effect.filterOrFail((alive) => alive.length === 0, (alive) => alive),
          Effect.retry({ schedule: Schedule.spaced(Duration.millis(200)), times: 50 }),
          Effect.orElseSucceed(() => tree.filter(isAlive))
        )
        expect(survivors).toEqual([])
        expect(stdout).toContain("throttlekit-effect stopped")
      })),
    { timeout: 120_000 }
  )
})
