/**
 * Quotas through the served door: our server (real gRPC on loopback) loads a policy file with quotas,
 * over the memory store and over Redis, and a `ServiceBackend` client checks, peeks and forecasts them.
 * A leased two-tier quota answers checks from leased credits (peek and forecast are not served, as on the
 * reference server); the Monitor reports the strategy as `quota` whatever the cadence; on Redis the state
 * sits at the wire's key (`prefix:key`) in the core's layout.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, type Scope } from "effect"
import { Redis } from "ioredis"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { Monitor } from "../../src/services/Monitor.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { oraclePeriod, type PeriodQuota } from "../support/quotaCalendar.js"
import { redisServer } from "../support/redisServer.js"

const HOUR = 3_600_000
/** The fixed UTC offset at which it is about noon now: the calendar boundaries are hours away. */
const noonOffset = 720 - (Math.floor(Date.now() / 60_000) % 1440)
const monthly: PeriodQuota = { kind: "quota", resetCadence: "calendar-month", limit: 3, offsetMinutes: noonOffset }

const config = `
limiters:
  monthly:
    strategy: quota
    limit: 3
    resetCadence: calendar-month
    offsetMinutes: ${noonOffset}
  rolling:
    strategy: quota
    limit: 2
    resetCadence: rolling
    period: 1h
    buckets: 4
  leased:
    strategy: quota
    limit: 5
    resetCadence: calendar-day
    offsetMinutes: ${noonOffset}
    twoTier:
      batch: 2
`

type Store = ThrottleKitServer.ThrottleKitServerOptions["store"]

/** Our server on a free loopback port serving `config` over `store`, and a client and a Monitor on it. */
const served = (store: Store): Effect.Effect<
  { readonly limiter: RateLimiter["Type"]; readonly monitor: Monitor["Type"] },
  unknown,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(config, "quota.yaml")
    const server = Context.get(
      yield* Layer.build(ThrottleKitServer.layer({
        policies,
        host: "127.0.0.1",
        port: 0,
        ...(store === undefined ? {} : { store })
      })),
      ThrottleKitServer.GrpcServer
    )
    const limiter = Context.get(yield* Layer.build(ServiceBackend.layer({ target: server.address })), RateLimiter)
    const monitor = Context.get(yield* Layer.build(MonitorBackend.layer({ target: server.address })), Monitor)
    return { limiter, monitor }
  })

const exercise = (limiter: RateLimiter["Type"], key: string) =>
  Effect.gen(function*() {
    const before = Date.now()
    const { end } = oraclePeriod(monthly, before)
    const decisions = yield* limiter.checkMany("monthly", [key, key, key, key])
    expect(decisions.map((d) => [d.allowed, d.limit, d.remaining, d.resetAt])).toEqual([
      [true, 3, 2, end],
      [true, 3, 1, end],
      [true, 3, 0, end],
      [false, 3, 0, end]
    ])
    expect(decisions[3]!.retryAfterMs).toBeLessThanOrEqual(end - before)
    expect((yield* limiter.peek("monthly", key)).allowed).toBe(false)
    expect({ ...(yield* limiter.forecast("monthly", key)) }).toEqual({
      spendableNow: 0,
      nextReplenishAt: end,
      fullAt: end
    })
    const fresh = yield* limiter.forecast("monthly", `${key}-fresh`, 2)
    expect(fresh.spendableNow).toBe(1)

    const rolling = yield* limiter.check("rolling", key, 2)
    expect([rolling.allowed, rolling.limit, rolling.remaining]).toEqual([true, 2, 0])
    expect(rolling.resetAt).toBeGreaterThan(before + HOUR)
    expect((yield* limiter.check("rolling", key)).allowed).toBe(false)

    // Leased from the store in batches of 2, all or nothing (as the core leases on a non-windowed
    // strategy): two leases of 2, then a lease of 2 finds 1 unit left in the day and is refused.
    const leased = yield* Effect.forEach(Array.from({ length: 6 }), () => limiter.check("leased", key))
    expect(leased.map((d) => d.allowed)).toEqual([true, true, true, true, false, false])
    expect((yield* Effect.flip(limiter.peek("leased", key)))._tag).toBe("OperationNotSupported")
    expect((yield* Effect.flip(limiter.forecast("leased", key)))._tag).toBe("OperationNotSupported")
  })

describe("quotas through our server", () => {
  it.live("over the memory store: check, checkMany, peek, forecast, two-tier; the Monitor says quota", () =>
    Effect.scoped(Effect.gen(function*() {
      const { limiter, monitor } = yield* served(undefined)
      yield* exercise(limiter, "alice")
      const snapshot = yield* monitor.snapshot
      const strategies = Object.fromEntries(snapshot.policies.map((p) => [p.name, p.strategy]))
      expect(strategies).toEqual({ monthly: "quota", rolling: "quota", leased: "quota" })
      expect(snapshot.policies.find((p) => p.name === "monthly")).toMatchObject({ allowed: 3, denied: 1, limit: 3 })
    })))

  it.live("over Redis: the same answers, the state at the wire's key in the core's layout", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* redisServer
      const { limiter } = yield* served({ kind: "redis", redis: redis.url })
      const key = `bob-${Date.now()}`
      yield* exercise(limiter, key)
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(redis.url)),
        (client) => Effect.sync(() => client.disconnect())
      )
      const { start } = oraclePeriod(monthly, Date.now())
      expect(yield* Effect.promise(() => admin.hmget(`monthly:${key}`, "s", "c"))).toEqual([String(start), "3"])
      // A rolling quota keeps the sliding window's hash: "tick:count" under slot fields.
      const rolling = yield* Effect.promise(() => admin.hgetall(`rolling:${key}`))
      expect(Object.values(rolling)).toEqual([expect.stringMatching(/^\d+:2$/)])
    })))
})
