/**
 * No ghost writes: a consuming call reported as failed is never applied afterwards. The private
 * `redis-server` is frozen (SIGSTOP: the connection stays open and every command sent waits in its
 * socket), calls are made and fail on their bound, then Redis is thawed and runs everything it received.
 * Each consuming script carries a fence on the Redis clock and applies nothing past it, so what Redis
 * holds afterwards is exactly what was answered OK:
 *
 * - the library (`RedisBackend`): debits, checks and admissions while frozen;
 * - the server binary (`serve --store redis`, fail-open): debits answered UNAVAILABLE and checks answered
 *   "allowed" by fail-open are not counted, and admissions leave no lease; a client whose own deadline
 *   passes first gets `OutcomeUnknown` for a debit (it cannot know) and `ServiceUnavailable` for a read;
 * - admissions interrupted while still within their bound leave no lease: the abandoned acquire is
 *   followed by a release on the same connection (this test fails without that release);
 * - a forced shutdown of the server with 200 admissions in flight and Redis frozen leaves no lease (this
 *   one fails without the fence: 159 leases were left when it was written).
 *
 * Redis is read back over a connection of the test's own.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Logger, LogLevel, Scope } from "effect"
import { Redis } from "ioredis"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { MeterPolicy } from "../../src/Policy.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { startServer, tempFile } from "../server/cliProcess.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { redisServer } from "../support/redisServer.js"
import { fixedWindow, pool } from "./support.js"

/** The bound on every Redis call of the library under test. */
const TIMEOUT_MS = 300
/** How long Redis stays frozen once the calls have failed (the commands wait in its socket meanwhile). */
const FROZEN_AFTER_MS = 1500

const budget: MeterPolicy = {
  kind: "meter",
  name: "tokens",
  prefix: "tokens",
  maxKeys: 100_000,
  budget: 1_000_000,
  windowMs: LONG_WINDOW_MS,
  shared: false
}
const window = fixedWindow("window", 1_000_000, LONG_WINDOW_MS)
const slots = pool("slots", 100)

/** A connection of the test's own, to read what Redis holds. */
const reader = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1 })),
    (client) => Effect.sync(() => client.disconnect())
  )

/** The pid of the Redis process behind `client`. */
const redisPid = (client: Redis) =>
  Effect.map(Effect.tryPromise(() => client.info("server")), (info) => Number(/process_id:(\d+)/.exec(info)?.[1]))

/** A private Redis, a connection of the test's own to it, and its pid (to freeze it). */
const frozenLater = Effect.gen(function*() {
  const redis = yield* redisServer
  const client = yield* reader(redis.url)
  const pid = yield* redisPid(client)
  return { url: redis.url, client, pid }
})

/** Runs `effect` with Redis frozen (SIGSTOP), thawing it (SIGCONT) however `effect` ends. */
const whileFrozen = <A, E, R>(pid: number, effect: Effect.Effect<A, E, R>) =>
  Effect.ensuring(
    Effect.zipRight(Effect.sync(() => process.kill(pid, "SIGSTOP")), effect),
    Effect.sync(() => process.kill(pid, "SIGCONT"))
  )

/** The server binary serving `policies` (YAML text) from the Redis at `url`, with `flags` added. */
const serveOnRedis = (policies: string, url: string, ...flags: ReadonlyArray<string>) =>
  startServer([
    "--config",
    tempFile("ghost-writes.yaml", policies),
    "--port",
    "0",
    "--store",
    "redis",
    "--redis",
    url,
    ...flags
  ])

/** What Redis holds for the three policies: tokens spent, units counted in the window, leases held. */
const stored = (client: Redis, budgetKey: string, windowKey: string) =>
  Effect.tryPromise(async () => ({
    spent: Number(await client.hget(budgetKey, "c") ?? 0),
    counted: Number(await client.hget(windowKey, "c") ?? 0),
    leases: await client.zcard("{slots}#leases")
  }))

const outcome = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(effect), (exit) => (Exit.isSuccess(exit) ? "ok" : "failed"))

describe("no ghost writes: a call reported as failed is never applied afterwards", () => {
  it.live(
    "RedisBackend: debits, checks and admissions made while Redis is frozen count for nothing once it thaws",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { client, pid, url } = yield* frozenLater
        const limiter = Context.get(
          yield* Layer.build(
            RedisBackend.layer({ policies: [budget, window, slots], redis: url, timeoutMs: TIMEOUT_MS })
          ),
          RateLimiter
        )
        // Answered before the freeze: these count.
        for (let i = 0; i < 4; i++) {
          expect((yield* limiter.debit("tokens", "k", 10)).allowed).toBe(true)
          expect((yield* limiter.check("window", "k")).allowed).toBe(true)
        }
        const before = yield* stored(client, "tokens:k", "window:k")
        expect(before).toEqual({ spent: 40, counted: 4, leases: 0 })

        const answers = yield* whileFrozen(
          pid,
          Effect.gen(function*() {
            const calls = [
              ...Array.from({ length: 12 }, () => outcome(limiter.debit("tokens", "k", 10))),
              ...Array.from({ length: 12 }, () => outcome(limiter.check("window", "k"))),
              ...Array.from({ length: 12 }, () => outcome(limiter.leases.acquire("slots", "k")))
            ]
            const answers = yield* Effect.all(calls, { concurrency: "unbounded" })
            yield* Effect.sleep(FROZEN_AFTER_MS)
            return answers
          })
        )
        expect(answers.every((answer) => answer === "failed")).toBe(true)
        // Redis runs the 36 waiting commands as soon as it thaws; a ping behind them waits for all.
        yield* Effect.tryPromise(() => client.ping())
        const after = yield* stored(client, "tokens:k", "window:k")
        expect(after).toEqual(before)
        // The door works again, and counts from where it was.
        expect((yield* limiter.debit("tokens", "k", 10)).remaining).toBe(1_000_000 - 50)
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 60_000 }
  )

  it.live(
    "admissions interrupted while Redis is frozen leave no lease behind",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { client, pid, url } = yield* frozenLater
        // A long bound: the acquires are still waiting (not timed out) when they are interrupted.
        const backendScope = yield* Scope.make()
        const limiter = Context.get(
          yield* Layer.buildWithScope(
            RedisBackend.layer({ policies: [slots], redis: url, timeoutMs: 10_000 }),
            backendScope
          ),
          RateLimiter
        )
        expect((yield* limiter.check("nope", "k").pipe(Effect.flip))._tag).toBe("PolicyNotFound")
        yield* whileFrozen(
          pid,
          Effect.gen(function*() {
            const acquiring = yield* Effect.fork(
              Effect.all(Array.from({ length: 50 }, () => limiter.leases.acquire("slots", "k")), {
                concurrency: "unbounded"
              })
            )
            yield* Effect.sleep("100 millis")
            yield* Fiber.interrupt(acquiring)
          })
        )
        // Thawed, Redis runs each acquire and then the release that followed it on the connection.
        yield* Effect.tryPromise(() => client.ping())
        yield* Effect.sleep("50 millis")
        yield* Scope.close(backendScope, Exit.void)
        expect(yield* Effect.tryPromise(() => client.zcard("{slots}#leases"))).toBe(0)
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 60_000 }
  )

  it.live(
    "the server binary (--store redis, fail open): what Redis holds equals what was answered OK",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { client, pid, url } = yield* frozenLater
        const server = yield* serveOnRedis(
          "limiters:\n" +
            "  window:\n    strategy: fixedWindow\n    limit: 1000000\n    period: 30d\n" +
            "  tokens:\n    tokenBudget:\n      budget: 1000000\n      windowMs: 30d\n" +
            "  slots:\n    concurrency:\n      algorithm: fixed\n      minLimit: 100\n      maxLimit: 100\n",
          url,
          "--fail",
          "open"
        )
        // The client waits longer than the server's Redis bound (1 s), so every answer is the server's.
        const limiter = Context.get(
          yield* Layer.build(ServiceBackend.layer({ target: server.address, deadline: 5000 })),
          RateLimiter
        )
        const ok: Array<string> = []
        for (let i = 0; i < 4; i++) {
          if ((yield* outcome(limiter.debit("tokens", "k", 10))) === "ok") ok.push("debit")
          if ((yield* outcome(limiter.check("window", "k"))) === "ok") ok.push("check")
        }
        expect(ok.length).toBe(8)

        const answers = yield* whileFrozen(
          pid,
          Effect.gen(function*() {
            const debits = yield* Effect.all(
              Array.from({ length: 12 }, () => outcome(limiter.debit("tokens", "k", 10))),
              { concurrency: "unbounded" }
            )
            const checks = yield* Effect.all(
              Array.from({ length: 12 }, () => Effect.either(limiter.check("window", "k"))),
              { concurrency: "unbounded" }
            )
            const admits = yield* Effect.all(
              Array.from({ length: 12 }, () => outcome(Effect.scoped(limiter.admit("slots", "k")))),
              { concurrency: "unbounded" }
            )
            // A client that gives up before the server answers cannot know whether the server applied
            // its debit: OutcomeUnknown, not ServiceUnavailable. A read that times out is unavailable.
            const impatient = Context.get(
              yield* Layer.build(ServiceBackend.layer({ target: server.address, deadline: 200 })),
              RateLimiter
            )
            const unknown = yield* Effect.flip(impatient.debit("tokens", "k", 10))
            const unavailable = yield* Effect.flip(impatient.peek("window", "k"))
            yield* Effect.sleep(FROZEN_AFTER_MS)
            return { debits, checks, admits, unknown: unknown._tag, unavailable: unavailable._tag }
          })
        )
        expect(answers.debits.every((answer) => answer === "failed")).toBe(true)
        // Fail-open answers the checks "allowed" while Redis is down; they must not count later.
        expect(answers.checks.every((answer) => answer._tag === "Right" && answer.right.allowed)).toBe(true)
        expect(answers.admits.every((answer) => answer === "failed")).toBe(true)
        expect([answers.unknown, answers.unavailable]).toEqual(["OutcomeUnknown", "ServiceUnavailable"])

        yield* Effect.tryPromise(() => client.ping())
        yield* Effect.sleep("200 millis")
        const keys = yield* Effect.tryPromise(() => client.keys("*"))
        const windowKey = keys.find((key) => key.startsWith("window"))
        const budgetKey = keys.find((key) => key.startsWith("tokens"))
        expect(yield* stored(client, budgetKey ?? "", windowKey ?? "")).toEqual({ spent: 40, counted: 4, leases: 0 })
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 120_000 }
  )

  it.live(
    "the server binary forced to shut down with 200 admissions in flight and Redis frozen leaves no lease",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { client, pid, url } = yield* frozenLater
        const server = yield* serveOnRedis(
          "limiters:\n  slots:\n    concurrency:\n      algorithm: fixed\n      minLimit: 500\n      maxLimit: 500\n",
          url,
          "--shutdown-timeout-ms",
          "300"
        )
        const clientScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(clientScope, Exit.void).pipe(Effect.forkDaemon))
        const limiter = Context.get(
          yield* Layer.buildWithScope(ServiceBackend.layer({ target: server.address, deadline: 10_000 }), clientScope),
          RateLimiter
        )
        expect((yield* Effect.scoped(limiter.admit("slots", "warm"))).held).toBe(true)
        const ended = yield* whileFrozen(
          pid,
          Effect.gen(function*() {
            yield* Effect.forkIn(
              Effect.all(Array.from({ length: 200 }, () => Effect.either(limiter.leases.acquire("slots", "k"))), {
                concurrency: "unbounded"
              }),
              clientScope
            )
            yield* Effect.sleep("300 millis")
            return yield* server.stop
          })
        )
        expect(ended.code).toBe(0)
        // Thawed, Redis runs whatever reached it: each acquire, then the release sent behind it.
        yield* Effect.tryPromise(() => client.ping())
        yield* Effect.sleep("200 millis")
        expect(yield* Effect.tryPromise(() => client.zcard("{slots}#leases"))).toBe(0)
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 120_000 }
  )
})
