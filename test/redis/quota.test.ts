/**
 * Quotas on the Redis door: every calendar edge of test/support/quotaCalendar.ts replayed through the
 * vendored Lua on Effect's clock (driven by `TestClock`), and the state at the wire's key as the
 * ThrottleKit core keeps it: a hash `s` = period start, `c` = count, expiring at the period's end, which
 * our door continues when the core wrote it (and the other way round); a rolling quota keeps the sliding
 * window's hash; a unified admitter with a quota rate axis runs `quota.admit`.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { calendarEdges, edgePolicy, replayEdge } from "../support/quotaCalendar.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const DAY = 86_400_000

describe("RedisBackend quotas", () => {
  layer(testRedisLayer())((it) => {
    calendarEdges.forEach((edge, i) => {
      it.scoped(`with Effect's clock: ${edge.name}`, () =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const prefix = `${env.ns}:edge${i}`
          const limiter = yield* RedisBackend.make({
            policies: [edgePolicy("quota", prefix, edge)],
            redis: env.url,
            clock: "effect"
          })
          yield* replayEdge(limiter, "quota", "k", edge)
          // The core's layout: the period's start and its count, expiring at the period's end.
          const key = `${prefix}:k`
          expect(yield* Effect.promise(() => env.client.hmget(key, "s", "c"))).toEqual([String(edge.end), "1"])
          const ttl = yield* Effect.promise(() => env.client.pttl(key))
          expect(ttl).toBeLessThanOrEqual(edge.following - edge.end)
          expect(ttl).toBeGreaterThan(edge.following - edge.end - 60_000)
        }))
    })

    it.scoped("continues a count the core wrote, and leaves one the core's read script reads", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const prefix = `${env.ns}:core`
        const policies: ReadonlyArray<Policy> = [{
          kind: "limiter",
          name: "monthly",
          prefix,
          maxKeys: 10,
          strategy: { kind: "quota", resetCadence: "calendar-month", limit: 10, offsetMinutes: 330 }
        }]
        const limiter = yield* RedisBackend.make({ policies, redis: env.url, clock: "effect" })
        // June 2024 at UTC+5:30 starts at 2024-05-31T18:30Z and ends at 2024-06-30T18:30Z.
        const start = Date.UTC(2024, 4, 31, 18, 30)
        const end = Date.UTC(2024, 5, 30, 18, 30)
        yield* Effect.promise(() => env.client.hset(`${prefix}:a`, "s", String(start), "c", "7"))
        yield* TestClock.setTime(Date.UTC(2024, 5, 15))
        const decision = yield* limiter.check("monthly", "a", 2)
        expect({ ...decision }).toEqual({ allowed: true, limit: 10, remaining: 1, resetAt: end, retryAfterMs: 0 })
        expect(yield* Effect.promise(() => env.client.hmget(`${prefix}:a`, "s", "c"))).toEqual([String(start), "9"])
        // A count of an earlier period counts nothing.
        yield* Effect.promise(() => env.client.hset(`${prefix}:b`, "s", String(start - 30 * DAY), "c", "10"))
        expect((yield* limiter.check("monthly", "b")).remaining).toBe(9)
      }))

    it.scoped("a rolling quota keeps the sliding window's state at the wire's key", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const prefix = `${env.ns}:rolling`
        const limiter = yield* RedisBackend.make({
          policies: [{
            kind: "limiter",
            name: "rolling",
            prefix,
            maxKeys: 10,
            strategy: { kind: "quota", resetCadence: "rolling", limit: 5, periodMs: 60_000, buckets: 6 }
          }],
          redis: env.url,
          clock: "effect"
        })
        const now = 1_800_000_000_000
        yield* TestClock.setTime(now)
        expect((yield* limiter.check("rolling", "k", 2)).remaining).toBe(3)
        // slidingWindow's hash: field = tick mod (buckets + 1), value = "tick:count", ticks of 10 s.
        const tick = now / 10_000
        expect(yield* Effect.promise(() => env.client.hgetall(`${prefix}:k`))).toEqual({
          [String(tick % 7)]: `${tick}:2`
        })
      }))

    it.scoped("a unified admitter with a calendar-day quota binds on rate until local midnight", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const limiter = yield* RedisBackend.make({
          policies: [{
            kind: "admitter",
            name: "daily",
            prefix: `${env.ns}:daily`,
            maxKeys: 10,
            concurrency: {
              algorithm: "fixed",
              minLimit: 5,
              maxLimit: 5,
              initialLimit: 5,
              backoffRatio: 0.9,
              smoothing: 0.2,
              tolerance: 2,
              rttWindow: 10
            },
            rate: { kind: "quota", resetCadence: "calendar-day", limit: 1, offsetMinutes: -300 }
          }],
          redis: env.url,
          clock: "effect"
        })
        // 2024-03-10T03:00Z is 22:00 on the 9th at UTC-5: the day ends at 2024-03-10T05:00Z.
        yield* TestClock.setTime(Date.UTC(2024, 2, 10, 3))
        const first = yield* limiter.leases.acquire("daily", "user")
        expect(first.held).toBe(true)
        const second = yield* limiter.leases.acquire("daily", "user")
        expect([second.held, second.bindingAxis, second.decision.resetAt, second.decision.retryAfterMs]).toEqual([
          false,
          "rate",
          Date.UTC(2024, 2, 10, 5),
          2 * 3_600_000
        ])
        yield* limiter.leases.release(first.leaseId, false)
        yield* TestClock.setTime(Date.UTC(2024, 2, 10, 5))
        const next = yield* limiter.leases.acquire("daily", "user")
        expect(next.held).toBe(true)
        yield* limiter.leases.release(next.leaseId, false)
      }))
  })
})
