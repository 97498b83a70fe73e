/**
 * Insurance (`RedisBackend`'s `insurance`): while Redis is unreachable each process decides alone against
 * its share of each limit, and goes back to Redis by itself when it answers again.
 *
 * Real parts: a private `redis-server`, frozen with SIGSTOP under load and thawed with SIGCONT; three
 * Redis doors in this process, each with its own connection and its own insurance (three "instances").
 * Decisions made while degraded are counted per window (`resetAt` names a fixed window's end) against
 * the sum of the shares. The wait for recovery is bounded generously (a loaded machine), not timed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Layer, Schedule } from "effect"
import { Redis } from "ioredis"
import type { Decision } from "../../src/Decision.js"
import * as Insurance from "../../src/layers/Insurance.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { eventually } from "../reliability/support.js"
import { redisServer, type RedisServerHandle } from "../support/redisServer.js"

const INSTANCES = 3
const LIMIT = 30
const WINDOW_MS = 1000
const SHARE = Math.floor(LIMIT / INSTANCES)

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "api",
    prefix: "ins",
    maxKeys: 1000,
    strategy: { kind: "fixedWindow", limit: LIMIT, windowMs: WINDOW_MS }
  },
  { kind: "meter", name: "llm", prefix: "insllm", maxKeys: 1000, budget: 90, windowMs: 2_592_000_000, shared: false }
]

/** One instance: a Redis door with its own connection and insurance. */
const instance = (redis: RedisServerHandle) =>
  Effect.map(
    Layer.build(RedisBackend.layer({
      policies,
      redis: redis.url,
      timeoutMs: 200,
      insurance: { instances: INSTANCES, probeIntervalMs: 100 }
    })),
    Context.get(RateLimiter)
  )

interface Seen {
  readonly instance: number
  readonly decision: Decision
}

describe("insurance", () => {
  it.live(
    "Redis frozen under load: each instance decides within its share; back to Redis after SIGCONT",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const limiters = yield* Effect.forEach(Array.from({ length: INSTANCES }), () => instance(redis))
        const seen: Array<Seen> = []
        const failures: Array<string> = []
        let phase: "healthy" | "frozen" | "thawed" = "healthy"
        let stopping = false
        // Four callers per instance, each checking one hot key as fast as the answers come.
        const load = yield* Effect.fork(Effect.forEach(
          limiters.flatMap((limiter, i) => Array.from({ length: 4 }, () => [limiter, i] as const)),
          ([limiter, i]: readonly [RateLimiterService, number]) =>
            Effect.gen(function*() {
              while (!stopping) {
                const result = yield* Effect.either(limiter.check("api", "hot"))
                if (Either.isRight(result)) seen.push({ instance: i, decision: result.right })
                else failures.push(`${phase}: ${result.left._tag}`)
                yield* Effect.sleep("3 millis")
              }
            }),
          { concurrency: "unbounded", discard: true }
        ))
        yield* eventually("decisions from Redis", () => seen.length >= 100)
        expect(seen.every((s) => !s.decision.degraded)).toBe(true)

        phase = "frozen"
        redis.pause()
        yield* Effect.sleep("2500 millis")
        const frozenUntil = seen.length
        phase = "thawed"
        redis.resume()
        yield* eventually(
          "every instance to decide through Redis again, without a restart",
          () => limiters.every((_, i) => seen.slice(frozenUntil).some((s) => s.instance === i && !s.decision.degraded)),
          "15 seconds"
        )
        const settled = seen.length
        yield* eventually("more decisions after recovery", () => seen.length >= settled + 60)
        stopping = true
        yield* Fiber.join(load)

        // No call failed: while Redis was frozen every call was answered from the local share.
        expect(failures).toEqual([])
        const degraded = seen.filter((s) => s.decision.degraded)
        expect(degraded.length).toBeGreaterThan(50)
        // A degraded decision reports the share as its limit; the load met the shares (some were denied).
        expect(new Set(degraded.map((s) => s.decision.limit))).toEqual(new Set([SHARE]))
        expect(degraded.some((s) => !s.decision.allowed)).toBe(true)
        // Per window, the degraded admissions are at most the sum of the shares, and each instance's at most its own.
        const perWindow = new Map<number, Array<number>>()
        for (const s of degraded) {
          if (!s.decision.allowed) continue
          const counts = perWindow.get(s.decision.resetAt) ?? new Array<number>(INSTANCES).fill(0)
          counts[s.instance]! += 1
          perWindow.set(s.decision.resetAt, counts)
        }
        expect(perWindow.size).toBeGreaterThanOrEqual(2)
        console.log(
          `[insurance] ${seen.length} decisions, ${degraded.length} degraded over ${perWindow.size} windows; ` +
            `admitted per window (per instance): ${Array.from(perWindow.values(), (c) => c.join("+")).join(", ")}`
        )
        for (const counts of perWindow.values()) {
          expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(SHARE * INSTANCES)
          for (const count of counts) expect(count).toBeLessThanOrEqual(SHARE)
        }
        // After recovery the decisions are Redis's again: the tail is not degraded, and Redis holds the key.
        expect(seen.slice(settled).every((s) => !s.decision.degraded)).toBe(true)
        expect(seen.slice(settled).every((s) => s.decision.limit === LIMIT)).toBe(true)
        const admin = new Redis(redis.url)
        const count = yield* Effect.promise(() => admin.hget("ins:hot", "c"))
        yield* Effect.promise(() => admin.quit())
        expect(Number(count)).toBeGreaterThan(0)
      })),
    60_000
  )

  it.live(
    "meters are insured too (their budget scaled); peek is not (it reads the store)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const [limiter] = yield* Effect.forEach([0], () => instance(redis))
        const before = yield* limiter!.debit("llm", "team", 5)
        expect([before.allowed, before.degraded, before.limit]).toEqual([true, false, 90])
        redis.pause()
        const during = yield* limiter!.debit("llm", "team", 5)
        expect([during.allowed, during.degraded, during.limit, during.remaining]).toEqual([true, true, 30, 25])
        const peek = yield* Effect.flip(limiter!.peek("llm", "team"))
        expect(peek._tag).toBe("ServiceUnavailable")
        redis.resume()
        // Back to Redis by itself: a PING answers, and the next debit is Redis's again.
        const after = yield* Effect.retry(
          Effect.flatMap(
            limiter!.debit("llm", "team", 1),
            (d) => d.degraded ? Effect.fail("degraded") : Effect.succeed(d)
          ),
          Schedule.spaced("20 millis").pipe(Schedule.upTo("15 seconds"))
        )
        expect([after.degraded, after.limit]).toEqual([false, 90])
        // Redis's budget holds the first debit (5) and this one (1): the debit that timed out while Redis was
        // frozen was fenced (never applied there), and the degraded ones were counted locally only.
        expect(after.remaining).toBe(84)
      })),
    30_000
  )

  it("the share: exactly one of instances or share, and a bad one is a CONFIG error", () => {
    const part = (options: Insurance.InsuranceOptions) => Either.map(Insurance.shareOf(options), (f) => f(10))
    expect(part({ instances: 3 })).toEqual(Either.right(3))
    expect(part({ instances: 20 })).toEqual(Either.right(1))
    expect(part({ share: 0.25 })).toEqual(Either.right(2))
    expect(part({ share: 1 })).toEqual(Either.right(10))
    for (
      const bad of [{}, { instances: 2, share: 0.5 }, { instances: 0 }, { instances: 1.5 }, { share: 0 }, {
        share: 1.5
      }]
    ) {
      expect(Either.isLeft(part(bad))).toBe(true)
    }
    const scaled = Insurance.scaledPolicy(
      {
        kind: "limiter",
        name: "g",
        prefix: "g",
        maxKeys: 1,
        strategy: { kind: "tokenBucket", capacity: 100, refillPerSec: 10 },
        twoTier: { mode: "strict", batch: 4, lowWater: 0, windowCoupled: false }
      },
      (n) => Math.floor(n / 4),
      0.25
    )
    expect(scaled).toEqual({
      kind: "limiter",
      name: "g",
      prefix: "g",
      maxKeys: 1,
      strategy: { kind: "tokenBucket", capacity: 25, refillPerSec: 2.5 }
    })
  })

  it.live("a bad insurance option fails the layer with BackendError CONFIG, before any call", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* redisServer
      const error = yield* Effect.flip(Layer.build(RedisBackend.layer({
        policies,
        redis: redis.url,
        insurance: { instances: 0 }
      })))
      expect(error._tag).toBe("BackendError")
      expect(error.message).toContain("insurance instances must be a whole number ≥ 1, got 0")
    })))
})
