/**
 * The global-budget coordinator: the reservation arithmetic (partial grants, refusal at 0, refill at the
 * window boundary, tick-end expiry for the sliding window), input validation, and the same seeded
 * sequence of reservations giving identical grants in memory (TestClock) and in a real Redis (the
 * `*.reserve` scripts, Effect's clock), with the state left by a reservation readable by a plain check.
 * `reserveCallback` (the Redis clock's callback form, for background refreshes): the same budget as
 * `reserve`, reported exactly once, bad input as `InvalidArgument`, the EVAL fallback after SCRIPT FLUSH,
 * and a hung Redis as `ServiceUnavailable` after the bound.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, TestClock } from "effect"
import { Redis } from "ioredis"
import { Coordinator, type CoordinatorService, federatedKey } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import * as RedisCoordinator from "../../src/coordinator/RedisCoordinator.js"
import * as Reserve from "../../src/coordinator/reserve.js"
import type { Grant, WindowedStrategy } from "../../src/coordinator/reserve.js"
import type { RateLimiterError } from "../../src/Errors.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { prng } from "../support/prng.js"
import { RedisServer, redisServer } from "../support/redisServer.js"

const fixed: WindowedStrategy = { kind: "fixedWindow", limit: 5, windowMs: 60_000 }
const sliding: WindowedStrategy = { kind: "slidingWindow", limit: 10, windowMs: 1000, buckets: 4 }

describe("reserve (pure)", () => {
  it("grants partially, refuses at 0 until the window's end, and refills in the next window", () => {
    const reserver = Reserve.make(fixed)
    const at = (state: unknown, now: number, wants: number) => reserver.reserve(state, now, wants)
    const a = at(undefined, 0, 3)
    expect(a.grant).toEqual({ granted: 3, expiresAt: 60_000, limit: 5 })
    const b = at(a.state, 10, 5)
    expect(b.grant).toEqual({ granted: 2, expiresAt: 60_000, limit: 5 })
    const c = at(b.state, 20, 1)
    expect(c.grant).toEqual({ granted: 0, expiresAt: 60_000, limit: 5 })
    expect(c.state).toBe(b.state)
    const d = at(c.state, 60_000, 1)
    expect(d.grant).toEqual({ granted: 1, expiresAt: 120_000, limit: 5 })
  })

  it("a sliding-window grant expires at the end of the current tick, always after now", () => {
    const reserver = Reserve.make(sliding)
    const first = reserver.reserve(undefined, 1_700_000_000_100, 4)
    expect(first.grant).toEqual({ granted: 4, expiresAt: 1_700_000_000_250, limit: 10 })
    const second = reserver.reserve(first.state, 1_700_000_000_249, 100)
    expect(second.grant).toEqual({ granted: 6, expiresAt: 1_700_000_000_250, limit: 10 })
    const refused = reserver.reserve(second.state, 1_700_000_000_250, 1)
    expect(refused.grant.granted).toBe(0)
    expect(refused.grant.expiresAt).toBe(1_700_000_000_500)
    // Three ticks later the first tick's units have slid out of the window.
    const later = reserver.reserve(second.state, 1_700_000_001_250, 100)
    expect(later.grant.granted).toBe(10)
    // A tick width that is not a whole number still gives an expiry after now.
    const odd = Reserve.make({ kind: "slidingWindow", limit: 3, windowMs: 1000, buckets: 3 })
    for (let now = 1000; now < 1010; now++) expect(odd.reserve(undefined, now, 1).grant.expiresAt).toBeGreaterThan(now)
  })
})

describe("MemoryCoordinator", () => {
  it.effect("refuses bad input with InvalidArgument and grants nothing", () =>
    Effect.gen(function*() {
      const coordinator = MemoryCoordinator.make()
      yield* TestClock.setTime(1000)
      for (const [key, wants] of [["", 1], ["k", 0], ["k", -1], ["k", 1.5], ["k", Number.NaN]] as const) {
        const error = yield* Effect.flip(coordinator.reserve(fixed, key, wants))
        expect(error._tag).toBe("InvalidArgument")
      }
      expect(yield* coordinator.reserve(fixed, "k", 5)).toEqual({ granted: 5, expiresAt: 60_000, limit: 5 })
    }))

  it.effect("never forgets a budget still in its window, however many keys arrive; forgets spent windows", () =>
    Effect.gen(function*() {
      const coordinator = MemoryCoordinator.make({ maxKeys: 2 })
      yield* TestClock.setTime(1000)
      expect((yield* coordinator.reserve(fixed, "a", 5)).granted).toBe(5)
      // A flood of other budgets, far past maxKeys, within a's window: a stays exhausted.
      for (let i = 0; i < 200; i++) yield* coordinator.reserve(fixed, `junk-${i}`, 5)
      expect((yield* coordinator.reserve(fixed, "a", 1)).granted).toBe(0)
      expect((yield* coordinator.reserve(fixed, "junk-0", 1)).granted).toBe(0)
      // Once the window is over, every budget starts afresh (forgotten or not, it grants again).
      yield* TestClock.setTime(60_000)
      expect((yield* coordinator.reserve(fixed, "a", 1)).granted).toBe(1)
      expect((yield* coordinator.reserve(fixed, "junk-0", 1)).granted).toBe(1)
    }))

  it("federated keys put the domain in a hash tag", () => {
    expect(federatedKey("tk:fed", "api")).toBe("tk:fed:api")
    expect(federatedKey("", "api")).toBe("api")
  })
})

/** A seeded sequence of (advance, strategy, key, wants) steps. */
const sequence = (seed: number, steps: number) => {
  const { next } = prng(seed)
  const strategies: ReadonlyArray<WindowedStrategy> = [
    { kind: "fixedWindow", limit: 7, windowMs: 1000 },
    { kind: "slidingWindow", limit: 9, windowMs: 1000, buckets: 3 },
    { kind: "slidingWindow", limit: 20, windowMs: 700, buckets: 7 }
  ]
  return Array.from({ length: steps }, () => ({
    advance: Math.floor(next() * 180),
    strategy: strategies[Math.floor(next() * strategies.length)]!,
    key: `k${Math.floor(next() * 3)}`,
    wants: 1 + Math.floor(next() * 6)
  }))
}

const replay = (coordinator: CoordinatorService, seed: number) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(1_700_000_000_000 + seed)
    const grants: Array<Grant> = []
    for (const step of sequence(seed, 250)) {
      yield* TestClock.adjust(step.advance)
      // Each strategy gets its own key space, as each policy has its own prefix.
      grants.push(
        yield* coordinator.reserve(
          step.strategy,
          `${step.strategy.kind}-${step.strategy.limit}:${step.key}`,
          step.wants
        )
      )
    }
    return grants
  })

const redisCoordinator = Layer.unwrapScoped(
  Effect.map(RedisServer, (server) => RedisCoordinator.layer({ redis: server.url, clock: "effect" }))
)

layer(Layer.provideMerge(redisCoordinator, RedisServer.layer), { timeout: 60_000 })("RedisCoordinator", (it) => {
  it.effect("gives the same grants as the in-process coordinator for the same seeded reservations", () =>
    Effect.gen(function*() {
      const redis = yield* Coordinator
      for (const seed of [1, 2, 3]) {
        const expected = yield* replay(MemoryCoordinator.make(), seed)
        const actual = yield* replay(redis, seed)
        expect(actual).toEqual(expected)
        expect(expected.some((g) => g.granted === 0)).toBe(true)
        expect(expected.some((g) => g.granted > 0 && g.granted < 6)).toBe(true)
      }
    }))

  it.effect("leaves the strategy's own state: a plain check of the same key sees the reserved units", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer
      const redis = yield* Coordinator
      const policy: Policy = {
        kind: "limiter",
        name: "shared",
        prefix: "shared",
        strategy: { kind: "fixedWindow", limit: 5, windowMs: 60_000 },
        maxKeys: 100
      }
      yield* TestClock.setTime(1_700_000_000_000)
      const grant = yield* redis.reserve({ kind: "fixedWindow", limit: 5, windowMs: 60_000 }, "shared:k", 3)
      expect(grant).toEqual({ granted: 3, expiresAt: 1_700_000_040_000, limit: 5 })
      const decision = yield* Effect.flatMap(RateLimiter, (limiter) => limiter.check("shared", "k", 1)).pipe(
        Effect.provide(RedisBackend.layer({ policies: [policy], redis: server.url, clock: "effect" }))
      )
      expect(decision.remaining).toBe(1)
    }))

  it.effect("uses the Redis clock by default: the expiry is a real window boundary", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer
      const grant = yield* Effect.flatMap(Coordinator, (c) => c.reserve(fixed, "clock", 1)).pipe(
        Effect.provide(RedisCoordinator.layer({ redis: server.url }))
      )
      const now = Date.now()
      expect(grant.expiresAt % 60_000).toBe(0)
      expect(grant.expiresAt).toBeGreaterThan(now - 1000)
      expect(grant.expiresAt).toBeLessThanOrEqual(now + 61_000)
    }))
})

/** Runs one `reserveCallback` and waits for its report; `reports` counts how often `done` was called. */
const viaCallback = (
  coordinator: CoordinatorService,
  strategy: WindowedStrategy,
  key: string,
  wants: number,
  reports: { count: number } = { count: 0 }
) =>
  Effect.async<Exit.Exit<Grant, RateLimiterError>>((resume) => {
    const reserveCallback = coordinator.reserveCallback
    if (reserveCallback === undefined) return resume(Effect.dieMessage("no reserveCallback"))
    reserveCallback(strategy, key, wants, (exit) => {
      reports.count++
      resume(Effect.succeed(exit))
    })
  })

/** A Redis coordinator on the Redis clock (the one that offers `reserveCallback`) over `url`, in the scope. */
const onRedisClock = (url: string, timeoutMs?: number) =>
  Effect.map(
    Layer.build(RedisCoordinator.layer(timeoutMs === undefined ? { redis: url } : { redis: url, timeoutMs })),
    (context) => Context.get(context, Coordinator)
  )

describe("RedisCoordinator.reserveCallback", () => {
  it.scopedLive("is offered with the Redis clock only", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      expect((yield* onRedisClock(server.url)).reserveCallback).toBeDefined()
      const effectClock = yield* Effect.map(
        Layer.build(RedisCoordinator.layer({ redis: server.url, clock: "effect" })),
        (context) => Context.get(context, Coordinator)
      )
      expect(effectClock.reserveCallback).toBeUndefined()
    }))

  it.scopedLive("grants from the same budget as reserve, reporting once, for a strategy seen first or again", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const coordinator = yield* onRedisClock(server.url)
      const strategy: WindowedStrategy = { kind: "fixedWindow", limit: 5, windowMs: LONG_WINDOW_MS }
      const reports = { count: 0 }
      // First sight of this strategy (no prebuilt call yet), then the prebuilt call, then reserve.
      const first = yield* viaCallback(coordinator, strategy, "cb:k", 2, reports)
      const second = yield* viaCallback(coordinator, strategy, "cb:k", 2, reports)
      const third = yield* coordinator.reserve(strategy, "cb:k", 2)
      const fourth = yield* viaCallback(coordinator, strategy, "cb:k", 2, reports)
      expect([first, second].map((exit) => Exit.isSuccess(exit) && exit.value.granted)).toEqual([2, 2])
      expect(third.granted).toBe(1)
      expect(fourth).toStrictEqual(Exit.succeed({ granted: 0, expiresAt: third.expiresAt, limit: 5 }))
      yield* Effect.sleep("20 millis")
      expect(reports.count).toBe(3)
      // A sliding window goes the same way.
      const slidingHour: WindowedStrategy = { kind: "slidingWindow", limit: 4, windowMs: 3_600_000, buckets: 2 }
      const a = yield* viaCallback(coordinator, slidingHour, "cb:s", 3)
      const b = yield* viaCallback(coordinator, slidingHour, "cb:s", 3)
      expect([a, b].map((exit) => Exit.isSuccess(exit) && exit.value.granted)).toEqual([3, 1])
    }))

  it.scopedLive("reports bad input as InvalidArgument and reserves nothing", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const coordinator = yield* onRedisClock(server.url)
      const strategy: WindowedStrategy = { kind: "fixedWindow", limit: 5, windowMs: 3_600_000 }
      yield* coordinator.reserve(strategy, "bad:warm", 1)
      for (const [key, wants] of [["", 1], ["bad:k", 0], ["bad:k", 1.5]] as const) {
        const exit = yield* viaCallback(coordinator, strategy, key, wants)
        expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)).toMatchObject({
          _tag: "Some",
          value: { _tag: "InvalidArgument" }
        })
      }
      expect((yield* coordinator.reserve(strategy, "bad:k", 9)).granted).toBe(5)
    }))

  it.scopedLive("after SCRIPT FLUSH the call is sent again as EVAL and counts once", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const coordinator = yield* onRedisClock(server.url)
      const strategy: WindowedStrategy = { kind: "fixedWindow", limit: 10, windowMs: LONG_WINDOW_MS }
      expect((yield* coordinator.reserve(strategy, "flush:k", 3)).granted).toBe(3)
      const client = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      yield* Effect.promise(() => client.script("FLUSH"))
      const exit = yield* viaCallback(coordinator, strategy, "flush:k", 3)
      expect(Exit.isSuccess(exit) && exit.value.granted).toBe(3)
      expect((yield* coordinator.reserve(strategy, "flush:k", 10)).granted).toBe(4)
    }))

  it.scopedLive("a hung Redis is reported as ServiceUnavailable after the bound, once", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const coordinator = yield* onRedisClock(server.url, 200)
      const strategy: WindowedStrategy = { kind: "fixedWindow", limit: 10, windowMs: 3_600_000 }
      yield* coordinator.reserve(strategy, "hung:k", 1)
      server.pause()
      const reports = { count: 0 }
      const exit = yield* viaCallback(coordinator, strategy, "hung:k", 1, reports).pipe(
        Effect.ensuring(Effect.sync(() => server.resume()))
      )
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)).toMatchObject({
        _tag: "Some",
        value: { _tag: "ServiceUnavailable" }
      })
      // The late answer after the thaw is not reported a second time.
      yield* Effect.sleep("100 millis")
      expect(reports.count).toBe(1)
    }))
})
