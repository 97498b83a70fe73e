/**
 * Two-tier policies over the Redis door and the Redis coordinator (a private `redis-server`, the Redis
 * clock): two wrappers (two "servers") leasing one windowed budget admit at most its limit per window,
 * the leased units are the strategy's own state (a plain check of the same key on the Redis door sees
 * them), and leasing on a non-windowed strategy takes whole batches through the Redis door.
 *
 * With `lowWater`: two servers refreshing in the background still admit exactly the limit; with the
 * server frozen (SIGSTOP) a check that crosses the mark returns while its refresh waits on Redis, the
 * remaining credits are spent meanwhile, and a check at 0 waits for that one refresh; with the server
 * killed a failed refresh leaves the credits spendable and the check that needs Redis gets
 * `ServiceUnavailable`; closing the wrapper interrupts a refresh in flight. The coordinator is the real
 * one, wrapped only to count its reservations (and see one interrupted); that wrapper offers no
 * `reserveCallback`, so those refreshes run in fibers. Through the real coordinator's `reserveCallback`
 * (no fiber per refresh): three servers of four concurrent callers each admit exactly the limit, and with
 * Redis frozen the crossing check returns while a check at 0 waits for the callback's answer.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Clock, Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { Coordinator, type CoordinatorService } from "../../src/coordinator/Coordinator.js"
import * as RedisCoordinator from "../../src/coordinator/RedisCoordinator.js"
import { ServiceUnavailable } from "../../src/Errors.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import * as Front from "../../src/services/RateLimiter.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { type LocalStore, Store } from "../../src/services/RateLimiterStore.js"
import { RedisServer, redisServer } from "../support/redisServer.js"

// `hot` lasts 30 days: the lowWater tests count its credits on the Redis clock across a freeze of seconds,
// and an hour's window would roll over at the top of the hour. The 60 s windows are left to
// `intoFreshWindow`.
const config = `
limiters:
  leased:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    twoTier:
      mode: leased
      batch: 5
      windowCoupled: true
  plainView:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    prefix: leased
  bucket:
    strategy: tokenBucket
    capacity: 6
    refillPerSec: 0.001
    twoTier:
      mode: leased
      batch: 4
  leasedLow:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    twoTier:
      mode: leased
      batch: 5
      lowWater: 2
      windowCoupled: true
  plainLowView:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    prefix: leasedLow
  hot:
    strategy: fixedWindow
    limit: 1000
    windowMs: 2592000000
    twoTier:
      mode: leased
      batch: 10
      lowWater: 5
      windowCoupled: true
  crowd:
    strategy: fixedWindow
    limit: 300
    windowMs: 60000
    twoTier:
      mode: leased
      batch: 10
      lowWater: 6
      windowCoupled: true
  crowdView:
    strategy: fixedWindow
    limit: 300
    windowMs: 60000
    prefix: crowd
`

/** One "server": the front over the two-tier wrapper over its own Redis store and Redis coordinator. */
const serverOn = (url: string) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(config, "test")
    const context = yield* Layer.build(
      Front.layer().pipe(
        Layer.provide(TwoTier.layer),
        Layer.provide(RedisBackend.layerStore({ policies, redis: url })),
        Layer.provide(RedisCoordinator.layer({ redis: url }))
      )
    )
    return Context.get(context, RateLimiter)
  })

/** The Redis store in `context` (a local store: it knows its policies). */
const localStore = (context: Context.Context<Store>): Effect.Effect<LocalStore> => {
  const store = Context.get(context, Store)
  return store._tag === "Local" ? Effect.succeed(store) : Effect.dieMessage("the Redis store is not a local store")
}

/** The front over the two-tier wrapper over `store`: one "server". */
const twoTier = (store: LocalStore, coordinator: CoordinatorService) =>
  Effect.flatMap(TwoTier.make(store, coordinator), (wrapped) => Front.make(wrapped))

/**
 * Waits out the current 60 s window (Redis's clock, so real time) when less than 5 s of it are left, so a
 * test stays inside one. The wait runs on the live clock: under the test's `TestClock` it would never end.
 */
const intoFreshWindow = Effect.suspend(() => {
  const intoWindow = Date.now() % 60_000
  return intoWindow > 55_000 ? Effect.sleep(60_000 - intoWindow + 10) : Effect.void
}).pipe(Effect.withClock(Clock.make()))

layer(RedisServer.layer, { timeout: 60_000 })("TwoTier over Redis", (it) => {
  it.scoped("two servers share one budget; the leased units are the strategy's state in Redis", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const a = yield* serverOn(redis.url)
      const b = yield* serverOn(redis.url)
      yield* intoFreshWindow
      const decisions = []
      for (let i = 0; i < 10; i++) {
        decisions.push(yield* a.check("leased", "k"))
        decisions.push(yield* b.check("leased", "k"))
      }
      const allowed = decisions.filter((d) => d.allowed)
      expect(allowed.length).toBe(12)
      expect(new Set(allowed.map((d) => d.resetAt)).size).toBe(1)
      // The Redis door reading the same key (same prefix, same strategy) sees the budget spent.
      const view = yield* a.check("plainView", "k")
      expect(view).toMatchObject({ allowed: false, remaining: 0, limit: 12 })
    }))

  it.scoped("leasing on a token bucket takes whole batches through the Redis door", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const a = yield* serverOn(redis.url)
      const b = yield* serverOn(redis.url)
      const results = [
        yield* a.check("bucket", "t"),
        yield* b.check("bucket", "t"),
        yield* a.check("bucket", "t"),
        yield* b.check("bucket", "t")
      ]
      // Each server leased 4 of the 6 tokens at its first check; the second batch did not fit.
      expect(results.map((d) => d.allowed)).toEqual([true, false, true, false])
      expect(results[1]).toMatchObject({ allowed: false, limit: 6 })
    }))

  it.scoped("lowWater: two servers refreshing in the background admit exactly the limit", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const a = yield* serverOn(redis.url)
      const b = yield* serverOn(redis.url)
      yield* intoFreshWindow
      // Each server checks 15 times (more than the limit, so whatever it leased it also spends).
      const [fromA, fromB] = yield* Effect.all(
        [a, b].map((s) => Effect.forEach(Array.from({ length: 15 }), () => s.check("leasedLow", "k"))),
        { concurrency: "unbounded" }
      )
      const allowed = [...fromA!, ...fromB!].filter((d) => d.allowed)
      expect(allowed.length).toBe(12)
      expect(new Set(allowed.map((d) => d.resetAt)).size).toBe(1)
      expect(yield* a.check("plainLowView", "k")).toMatchObject({ allowed: false, remaining: 0, limit: 12 })
    }))

  it.scoped("lowWater through reserveCallback: three servers, four callers each, admit exactly the limit", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const servers = yield* Effect.all([0, 1, 2].map(() => serverCountingCallbacks(redis.url)))
      yield* intoFreshWindow
      // 12 callers check 40 times each (480 > 300), so every unit leased is also spent.
      const results = yield* Effect.all(
        servers.flatMap(({ server }) =>
          Array.from({ length: 4 }, () => Effect.forEach(Array.from({ length: 40 }), () => server.check("crowd", "k")))
        ),
        { concurrency: "unbounded" }
      )
      const allowed = results.flat().filter((d) => d.allowed)
      expect(allowed.length).toBe(300)
      expect(new Set(allowed.map((d) => d.resetAt)).size).toBe(1)
      expect(yield* servers[0]!.server.check("crowdView", "k")).toMatchObject({ allowed: false, remaining: 0 })
      // The background refreshes went through the callback, the ones checks waited for through reserve.
      for (const { stats } of servers) {
        expect(stats.callbacks).toBeGreaterThan(0)
        expect(stats.reserves).toBeGreaterThan(0)
      }
    }))
})

/**
 * One "server" whose Redis coordinator is counted: `reserves` (in a fiber, the ones a check waits for)
 * and `callbacks` (background refreshes through `reserveCallback`).
 */
const serverCountingCallbacks = (url: string) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(config, "test")
    const context = yield* Layer.build(
      Layer.merge(RedisBackend.layerStore({ policies, redis: url }), RedisCoordinator.layer({ redis: url }))
    )
    const inner = Context.get(context, Coordinator)
    const reserveCallback = inner.reserveCallback
    expect(reserveCallback).toBeDefined()
    const stats = { reserves: 0, callbacks: 0 }
    const coordinator: CoordinatorService = {
      store: inner.store,
      reserve: (strategy, key, wants) =>
        Effect.suspend(() => {
          stats.reserves++
          return inner.reserve(strategy, key, wants)
        }),
      reserveCallback: (strategy, key, wants, done) => {
        stats.callbacks++
        reserveCallback!(strategy, key, wants, done)
      }
    }
    const server = yield* twoTier(yield* localStore(context), coordinator)
    return { server, stats }
  })

/** The Redis coordinator, counting reservations (started, in flight, interrupted). */
const counted = (inner: CoordinatorService) => {
  const stats = { calls: 0, inFlight: 0, maxInFlight: 0, interrupted: 0 }
  const coordinator: CoordinatorService = {
    store: inner.store,
    reserve: (strategy, key, wants) =>
      Effect.suspend(() => {
        stats.calls++
        stats.inFlight++
        stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
        return inner.reserve(strategy, key, wants).pipe(
          Effect.onInterrupt(() => Effect.sync(() => stats.interrupted++)),
          Effect.ensuring(Effect.sync(() => stats.inFlight--))
        )
      })
  }
  return { coordinator, stats }
}

/** A private Redis (these tests freeze and kill it) and one wrapper over it, in `scope`. */
const isolated = (scope: Scope.Scope) =>
  Effect.gen(function*() {
    const redis = yield* redisServer
    const policies = yield* PolicyFile.parse(config, "test")
    const context = yield* Layer.build(
      Layer.merge(RedisBackend.layerStore({ policies, redis: redis.url }), RedisCoordinator.layer({ redis: redis.url }))
    )
    const { coordinator, stats } = counted(Context.get(context, Coordinator))
    const server: RateLimiterService = yield* Scope.extend(
      twoTier(yield* localStore(context), coordinator),
      scope
    )
    return { redis, server, stats }
  })

/** Waits (live, at most 5 s) until `done` holds. */
const eventually = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500 && !done(); i++) yield* Effect.sleep("10 millis")
  })

describe("TwoTier lowWater over a private Redis", () => {
  it.scopedLive("the crossing check returns while its refresh waits on Redis; a check at 0 waits for it", () =>
    Effect.gen(function*() {
      const { redis, server, stats } = yield* isolated(yield* Effect.scope)
      const check = server.check("hot", "k")
      yield* Effect.forEach([1, 2, 3, 4], () => check) // 6 of 10 left
      expect(stats.calls).toBe(1)
      redis.pause()
      // Redis answers nothing now (calls time out after 1 s): everything until `resume` is local.
      expect(yield* check).toMatchObject({ allowed: true, remaining: 5 })
      expect(stats).toMatchObject({ calls: 2, inFlight: 1 })
      const spent = yield* Effect.forEach([1, 2, 3, 4, 5], () => check)
      expect(spent.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0])
      const waiting = yield* Effect.fork(check)
      yield* Effect.sleep("50 millis")
      expect(waiting.unsafePoll()).toBeNull()
      expect(stats).toMatchObject({ calls: 2, inFlight: 1 })
      redis.resume()
      expect(yield* Fiber.join(waiting)).toMatchObject({ allowed: true, remaining: 9 })
      expect(stats).toMatchObject({ calls: 2, inFlight: 0, maxInFlight: 1 })
    }))

  it.scopedLive("a failed refresh keeps the credits; the check that needs Redis gets ServiceUnavailable", () =>
    Effect.gen(function*() {
      const { redis, server, stats } = yield* isolated(yield* Effect.scope)
      const check = server.check("hot", "k")
      yield* Effect.forEach([1, 2, 3, 4], () => check)
      yield* Effect.promise(() => redis.stop())
      // Crossing the mark starts a refresh that fails; the credits held are still spent.
      expect(yield* check).toMatchObject({ allowed: true, remaining: 5 })
      yield* eventually(() => stats.inFlight === 0)
      expect(stats).toMatchObject({ calls: 2, inFlight: 0 })
      const spent = yield* Effect.forEach([1, 2, 3, 4, 5], () => check)
      expect(spent.every((d) => d.allowed)).toBe(true)
      expect(stats.calls).toBe(2)
      const error = yield* Effect.flip(check)
      expect(error).toBeInstanceOf(ServiceUnavailable)
      expect(stats.calls).toBe(3)
      // Redis is back (empty: it kept nothing): the next checks lease again.
      yield* Effect.promise(() => redis.start())
      let decision = yield* Effect.either(check)
      for (let i = 0; i < 100 && decision._tag === "Left"; i++) {
        yield* Effect.sleep("50 millis")
        decision = yield* Effect.either(check)
      }
      expect(decision).toMatchObject({ _tag: "Right", right: { allowed: true, remaining: 9 } })
    }))

  it.scopedLive("through reserveCallback: the crossing check returns while Redis is frozen; a check at 0 waits", () =>
    Effect.gen(function*() {
      const redis = yield* redisServer
      const { server, stats } = yield* serverCountingCallbacks(redis.url)
      const check = server.check("hot", "k")
      yield* Effect.forEach([1, 2, 3, 4], () => check) // 6 of 10 left
      expect(stats).toEqual({ reserves: 1, callbacks: 0 })
      redis.pause()
      expect(yield* check).toMatchObject({ allowed: true, remaining: 5 })
      expect(stats).toEqual({ reserves: 1, callbacks: 1 })
      const spent = yield* Effect.forEach([1, 2, 3, 4, 5], () => check)
      expect(spent.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0])
      const waiting = yield* Effect.fork(check)
      yield* Effect.sleep("50 millis")
      expect(waiting.unsafePoll()).toBeNull()
      redis.resume()
      expect(yield* Fiber.join(waiting)).toMatchObject({ allowed: true, remaining: 9 })
      expect(stats).toEqual({ reserves: 1, callbacks: 1 })
    }))

  it.scopedLive("closing the wrapper interrupts a refresh in flight", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { redis, server, stats } = yield* isolated(scope)
      const check = server.check("hot", "k")
      yield* Effect.forEach([1, 2, 3, 4], () => check)
      redis.pause()
      yield* check
      expect(stats.inFlight).toBe(1)
      yield* Scope.close(scope, Exit.void)
      expect(stats).toMatchObject({ interrupted: 1, inFlight: 0 })
      redis.resume()
    }))
})
