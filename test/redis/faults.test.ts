/**
 * Faults on the Redis door, against a private `redis-server` this file stops, freezes and restarts: a
 * hung or dead Redis gives a typed `ServiceUnavailable` within the call bound (never a hang, never a
 * defect), the backend recovers by itself when Redis is back (an emptied script cache included), a
 * timed-out check is applied at most once, and two instances on one Redis never admit more than the
 * limit together.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Ref, Schedule } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { startRedisServer } from "../support/redisServer.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const HOUR = 3_600_000
const BOUND_MS = 300
/** A hang would last until the TCP stack gives up (minutes); the bound is 300 ms. 10x is the liveness margin. */
const LIVENESS_MS = BOUND_MS * 10

const policies = (ns: string): ReadonlyArray<Policy> => [
  {
    kind: "limiter",
    name: "window",
    prefix: `${ns}:window`,
    maxKeys: 1000,
    strategy: { kind: "fixedWindow", limit: 25, windowMs: LONG_WINDOW_MS }
  },
  {
    kind: "limiter",
    name: "burst",
    prefix: `${ns}:burst`,
    maxKeys: 1000,
    strategy: { kind: "gcra", limit: 10, periodMs: HOUR, burst: 10 }
  },
  {
    kind: "limiter",
    name: "log",
    prefix: `${ns}:log`,
    maxKeys: 1000,
    strategy: { kind: "slidingWindowLog", limit: 15, windowMs: HOUR }
  },
  {
    kind: "meter",
    name: "tokens",
    prefix: `${ns}:tokens`,
    maxKeys: 1000,
    budget: 10,
    windowMs: LONG_WINDOW_MS,
    shared: false
  },
  {
    kind: "admitter",
    name: "pool",
    prefix: `${ns}:pool`,
    maxKeys: 1000,
    concurrency: {
      algorithm: "fixed",
      minLimit: 3,
      maxLimit: 3,
      initialLimit: 3,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 10
    }
  }
]

/** The tag of a failed exit's error (`"defect"` for a defect), or undefined on success. */
const failureTag = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  if (Cause.isDie(exit.cause)) return "defect"
  const failure = Cause.failureOption(exit.cause)
  return failure._tag === "Some" ? failure.value._tag : "interrupted"
}

/** Runs `effect`, expecting a typed ServiceUnavailable failure (not a defect), well within the liveness margin. */
const expectUnavailable = <A, E extends { readonly _tag: string }>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const exit = yield* Effect.exit(effect)
    const elapsed = Date.now() - started
    expect(failureTag(exit)).toBe("ServiceUnavailable")
    expect(elapsed).toBeLessThan(LIVENESS_MS)
  })

/** Retries `effect` until it succeeds (Redis coming back, ioredis reconnecting), for at most ~10 s. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.retry(effect, Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(100)))

const backend = (url: string, ns: string, timeoutMs = BOUND_MS) =>
  RedisBackend.make({ policies: policies(ns), redis: url, timeoutMs })

describe("RedisBackend faults", () => {
  layer(testRedisLayer({ privateServer: true }), { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect("a hung Redis gives ServiceUnavailable within the bound; answered again, the same layer recovers", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        const server = env.server!
        const limiter = yield* backend(env.url, `${env.ns}:hung`)
        yield* eventually(limiter.check("window", "k"))
        const before = yield* eventually(limiter.peek("window", "k"))
        server.pause()
        try {
          yield* expectUnavailable(limiter.check("window", "k"))
          yield* expectUnavailable(limiter.checkMany("window", ["a", "b"]))
          yield* expectUnavailable(limiter.peek("window", "k"))
          yield* expectUnavailable(limiter.forecast("window", "k"))
          yield* expectUnavailable(limiter.debit("tokens", "k"))
          yield* expectUnavailable(limiter.leases.acquire("pool", "k"))
        } finally {
          server.resume()
        }
        const after = yield* eventually(limiter.peek("window", "k"))
        // The hung check reached Redis and ran when it thawed, past its fence: it applied nothing (the
        // caller was told it failed), and it was never resent.
        expect(after.remaining).toBe(before.remaining)
      })))

    it.effect("on a hung Redis, checks started apart each time out on their own bound (one shared timer), interrupted ones too", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        const server = env.server!
        const limiter = yield* backend(env.url, `${env.ns}:deadlines`)
        yield* eventually(limiter.check("window", "k"))
        const before = yield* eventually(limiter.peek("window", "k"))
        /** A check's failure tag and how long after its start it came (performance.now, as the runner's). */
        const timed = Effect.gen(function*() {
          const started = performance.now()
          const exit = yield* Effect.exit(limiter.check("window", "k"))
          return { tag: failureTag(exit), elapsed: performance.now() - started }
        })
        server.pause()
        try {
          const first = yield* Effect.fork(
            Effect.all(Array.from({ length: 10 }, () => timed), { concurrency: "unbounded" })
          )
          // Interrupted while waiting: it neither fails later calls nor leaves the queue stuck.
          const abandoned = yield* Effect.fork(limiter.check("window", "k"))
          yield* Effect.sleep("100 millis")
          yield* Fiber.interrupt(abandoned)
          const second = yield* Effect.all(Array.from({ length: 10 }, () => timed), { concurrency: "unbounded" })
          const all = [...(yield* Fiber.join(first)), ...second]
          for (const { elapsed, tag } of all) {
            expect(tag).toBe("ServiceUnavailable")
            // Timers never fire early; 2 ms covers the event loop's ms-rounded clock.
            expect(elapsed).toBeGreaterThanOrEqual(BOUND_MS - 2)
            expect(elapsed).toBeLessThan(LIVENESS_MS)
          }
        } finally {
          server.resume()
        }
        // 21 checks reached Redis while it was frozen; each ran when it thawed, past its fence, and
        // applied nothing: every one was reported failed, and none counts.
        expect(before.remaining).toBeGreaterThanOrEqual(21)
        const after = yield* eventually(limiter.peek("window", "k"))
        expect(after.remaining).toBe(before.remaining)
        expect((yield* limiter.check("window", "other")).allowed).toBe(true)
      })))

    it.effect("Redis killed mid-run: typed failures, no defects; restarted, the same layer recovers (EVAL refills the cache)", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        const server = env.server!
        const limiter = yield* backend(env.url, `${env.ns}:killed`)
        expect((yield* eventually(limiter.check("window", "warm"))).allowed).toBe(true)

        const outcomes = yield* Ref.make({ ok: 0, unavailable: 0, other: 0 })
        const worker = (i: number) =>
          Effect.forEach(
            Array.from({ length: 40 }, (_, j) => j),
            (j) =>
              Effect.exit(limiter.check("burst", `w${i}:${j}`)).pipe(
                Effect.flatMap((exit) =>
                  Ref.update(outcomes, (o) => {
                    const tag = failureTag(exit)
                    if (tag === undefined) return { ...o, ok: o.ok + 1 }
                    return tag === "ServiceUnavailable"
                      ? { ...o, unavailable: o.unavailable + 1 }
                      : { ...o, other: o.other + 1 }
                  })
                ),
                Effect.zipRight(Effect.sleep("5 millis"))
              ),
            { discard: true }
          )
        yield* Effect.all([
          Effect.forEach([1, 2, 3, 4], worker, { concurrency: "unbounded", discard: true }),
          Effect.sleep("60 millis").pipe(Effect.zipRight(Effect.promise(() => server.stop())))
        ], { concurrency: "unbounded" })
        const seen = yield* Ref.get(outcomes)
        expect(seen.other).toBe(0)
        expect(seen.unavailable).toBeGreaterThan(0)
        expect(seen.ok + seen.unavailable).toBe(160)

        yield* expectUnavailable(limiter.check("window", "down"))
        yield* Effect.promise(() => server.start())
        const back = yield* eventually(limiter.check("window", "up"))
        expect(back.allowed).toBe(true)
        const cached = yield* Effect.promise(() =>
          env.client.script("EXISTS", env.catalog.scripts.get("fixedWindow.check")!.sha1)
        )
        expect(cached).toEqual([1])
      })))

    it.effect("SCRIPT FLUSH is invisible: check, checkMany, debit and admission fall back to EVAL", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        // A generous bound: this test is about the script cache, not about slowness.
        const limiter: RateLimiterService = yield* eventually(backend(env.url, `${env.ns}:flush`, 10_000))
        const flush = Effect.promise(() => env.client.script("FLUSH"))
        yield* eventually(Effect.promise(() => env.client.ping()))
        yield* flush
        expect((yield* limiter.check("window", "k")).remaining).toBe(24)
        yield* flush
        expect((yield* limiter.checkMany("window", ["k", "j", "k"])).map((d) => d.remaining)).toEqual([23, 24, 22])
        yield* flush
        expect((yield* limiter.debit("tokens", "k", 3)).remaining).toBe(7)
        yield* flush
        const admission = yield* limiter.leases.acquire("pool", "k")
        expect(admission.held).toBe(true)
        yield* flush
        expect((yield* limiter.leases.heartbeat([admission.leaseId])).live).toEqual([admission.leaseId])
        yield* flush
        yield* limiter.leases.release(admission.leaseId, false)
        const sha = env.catalog.scripts.get("fixedWindow.check")!.sha1
        expect(yield* Effect.promise(() => env.client.script("EXISTS", sha))).toEqual([0])
        yield* limiter.check("window", "k")
        expect(yield* Effect.promise(() => env.client.script("EXISTS", sha))).toEqual([1])
      })))

    it.effect("two instances on one Redis never admit more than the limit together", () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:pair`
        // A generous bound here: this test is about the limits holding, not about faults (and 2 shared
        // cores can be slow).
        const a = yield* eventually(backend(env.url, ns, 10_000))
        const b = yield* eventually(backend(env.url, ns, 10_000))
        const instances = [a, b]
        for (const [policy, limit] of [["window", 25], ["burst", 10], ["log", 15]] as const) {
          const decisions = yield* Effect.forEach(
            Array.from({ length: 120 }, (_, i) => i),
            (i) => instances[i % 2]!.check(policy, "shared"),
            { concurrency: 40 }
          )
          expect([policy, decisions.filter((d) => d.allowed).length]).toEqual([policy, limit])
        }

        // Concurrency: 40 fibers across both instances; at most 3 inside at any moment.
        const inside = yield* Ref.make(0)
        const peak = yield* Ref.make(0)
        const held = yield* Ref.make(0)
        yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
          Effect.scoped(Effect.gen(function*() {
            const admission = yield* instances[i % 2]!.admit("pool", `f${i}`)
            if (!admission.held) return
            yield* Ref.update(held, (n) => n + 1)
            const now = yield* Ref.updateAndGet(inside, (n) => n + 1)
            yield* Ref.update(peak, (p) => Math.max(p, now))
            yield* Effect.sleep("20 millis")
            yield* Ref.update(inside, (n) => n - 1)
          })), { concurrency: "unbounded", discard: true })
        expect(yield* Ref.get(peak)).toBeLessThanOrEqual(3)
        expect(yield* Ref.get(held)).toBeGreaterThanOrEqual(3)
        // Every slot went back: the ceiling is free again.
        const again = yield* Effect.forEach([a, b, a], (x) => x.leases.acquire("pool", "after"))
        expect(again.map((x) => x.held)).toEqual([true, true, true])
      })))

    it.effect("building the layer against an unreachable Redis fails with ServiceUnavailable", () =>
      Effect.gen(function*() {
        // A port that was just free and has no server: start one and kill it.
        const gone = yield* Effect.promise(() => startRedisServer())
        yield* Effect.promise(() => gone.close())
        yield* expectUnavailable(Effect.scoped(backend(gone.url, "nowhere")))
      }))
  })
})
