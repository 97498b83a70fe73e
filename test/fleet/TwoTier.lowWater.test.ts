/**
 * `twoTier.lowWater` through the two-tier wrapper (Memory door, in-process coordinator, TestClock):
 *
 * - config: a leased block needs `lowWater` below `batch`, from a file and from a programmatic list;
 * - the fleet bound with background refreshes: three servers on one budget, refreshes taking time and
 *   landing across window boundaries, admit at most `limit` per window, every admission inside the window
 *   that paid for it; and checks wait for the store less often than with `lowWater: 0`;
 * - a bounded table: a key dropped while its refresh is in flight is not put back when the grant lands;
 * - closing the wrapper's scope interrupts a refresh in flight;
 * - a coordinator's `reserveCallback` carries the background refreshes (a refusal waits for the
 *   boundary, by the asking check's clock); after the scope closes none is sent, and one already out
 *   lands;
 * - a non-windowed strategy refreshes in the background through the store below.
 *
 * The in-process coordinator answers at once, so it is wrapped to make a reservation take TestClock time
 * (and, for one key, wait for a gate): without that no refresh is ever in flight. Its budgets are the real
 * ones.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import type { CoordinatorService } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import type { Decision } from "../../src/Decision.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import { PolicySet } from "../../src/PolicySet.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import * as RateLimiter from "../../src/services/RateLimiter.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import type { LocalStore } from "../../src/services/RateLimiterStore.js"
import { countingStore } from "./support.js"

const WINDOW_MS = 1000
const LIMIT = 30
/** The callers' check periods: about 100 checks per window in all. */
const PERIODS_MS = [50, 53, 57, 61, 67, 71]

const config = `
limiters:
  low:
    strategy: fixedWindow
    limit: ${LIMIT}
    windowMs: ${WINDOW_MS}
    twoTier:
      mode: leased
      batch: 6
      lowWater: 3
      windowCoupled: true
  steady:
    strategy: fixedWindow
    limit: 130
    windowMs: ${WINDOW_MS}
    twoTier:
      mode: leased
      batch: 6
      lowWater: 3
      windowCoupled: true
  onDemand:
    strategy: fixedWindow
    limit: ${LIMIT}
    windowMs: ${WINDOW_MS}
    twoTier:
      mode: leased
      batch: 6
      windowCoupled: true
  bounded:
    strategy: fixedWindow
    limit: 100
    windowMs: 60000
    maxKeys: 2
    twoTier:
      mode: leased
      batch: 4
      lowWater: 1
      windowCoupled: true
  callback:
    strategy: fixedWindow
    limit: 6
    windowMs: 1000
    twoTier:
      mode: leased
      batch: 4
      lowWater: 2
      windowCoupled: true
  bucket:
    strategy: tokenBucket
    capacity: 100
    refillPerSec: 1
    twoTier:
      mode: leased
      batch: 5
      lowWater: 2
`

/**
 * The in-process coordinator, each reservation taking `delayMs` (half on the way there, half on the way
 * back, so a grant sized just before a boundary lands after it: `stats.late` counts those); once
 * `gate.key` is set, reservations of that key also wait for `open`.
 */
const slowCoordinator = (delayMs: number) =>
  Effect.gen(function*() {
    const inner = MemoryCoordinator.make()
    const opened = yield* Deferred.make<void>()
    const gate: { key: string | undefined } = { key: undefined }
    const stats = { calls: 0, inFlight: 0, interrupted: 0, late: 0 }
    const coordinator: CoordinatorService = {
      store: inner.store,
      reserve: (strategy, key, wants) =>
        Effect.suspend(() => {
          stats.calls++
          stats.inFlight++
          return Effect.sleep(delayMs / 2).pipe(
            Effect.zipRight(key === gate.key ? Deferred.await(opened) : Effect.void),
            Effect.zipRight(inner.reserve(strategy, key, wants)),
            Effect.tap((grant) =>
              Effect.sleep(delayMs / 2).pipe(
                Effect.zipRight(Clock.currentTimeMillis),
                Effect.map((now) => {
                  if (grant.granted > 0 && now >= grant.expiresAt) stats.late++
                })
              )
            ),
            Effect.onInterrupt(() => Effect.sync(() => stats.interrupted++)),
            Effect.ensuring(Effect.sync(() => stats.inFlight--))
          )
        })
    }
    return { coordinator, stats, gate, open: Deferred.succeed(opened, undefined) }
  })

/**
 * The in-process coordinator offering `reserveCallback`: callback reservations are held until `release`
 * answers the oldest one (at the TestClock time then); `stats` counts both kinds.
 */
const callbackCoordinator = Effect.sync(() => {
  const inner = MemoryCoordinator.make()
  const held: Array<Effect.Effect<void>> = []
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
      held.push(Effect.map(Effect.exit(inner.reserve(strategy, key, wants)), done))
    }
  }
  const release = Effect.suspend(() => held.shift() ?? Effect.dieMessage("no callback reservation held"))
  return { coordinator, stats, release, held }
})

/** The Memory store for the config's policies, counting the checks that reach it. */
const countingConfigStore = Effect.flatMap(PolicyFile.parse(config, "test"), countingStore)

/** A "server": the two-tier wrapper (its own L1 credits) over `store`, with the front on top. */
const twoTier = (store: LocalStore, coordinator: CoordinatorService) =>
  Effect.flatMap(TwoTier.make(store, coordinator), (wrapped) => RateLimiter.make(wrapped))

/** Lets other fibers run until `done` holds (at most 100 yields; the assertions after it tell). */
const settle = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100 && !done(); i++) yield* Effect.yieldNow()
  })

describe("twoTier.lowWater: config", () => {
  const file = (lowWater: number, mode = "leased") =>
    `limiters:\n  p:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n    twoTier:\n      mode: ${mode}\n      batch: 8\n      lowWater: ${lowWater}\n`

  it.effect("a leased block needs lowWater below batch", () =>
    Effect.gen(function*() {
      for (const lowWater of [8, 9]) {
        const error = yield* Effect.flip(PolicyFile.parse(file(lowWater), "f.yaml"))
        expect(error).toMatchObject({
          _tag: "PolicyError",
          path: "limiters.p.twoTier.lowWater",
          reason: `must be less than batch (8), got ${lowWater}`,
          source: "f.yaml",
          line: 9
        })
      }
      const ok = yield* PolicyFile.parse(file(7), "f.yaml")
      expect(ok.policies[0]).toMatchObject({ twoTier: { batch: 8, lowWater: 7 } })
      // Strict and cached-deny policies do not lease: lowWater is not used there and not checked.
      expect((yield* PolicyFile.parse(file(20, "strict"))).policies[0]).toMatchObject({ twoTier: { lowWater: 20 } })
    }))

  it.effect("a programmatic policy list gets the same rule", () =>
    Effect.gen(function*() {
      const policy: LimiterPolicy = {
        kind: "limiter",
        name: "p",
        prefix: "p",
        maxKeys: 10,
        strategy: { kind: "fixedWindow", limit: 10, windowMs: 1000 },
        twoTier: { mode: "leased", batch: 4, lowWater: 4, windowCoupled: true }
      }
      const error = yield* Effect.flip(PolicySet.make([policy]))
      expect(error.message).toBe("limiters.p.twoTier.lowWater: must be less than batch (4), got 4")
    }))
})

describe("twoTier.lowWater: the wrapper", () => {
  it.scoped("three servers refreshing in the background admit at most limit per window, each in its own window", () =>
    Effect.gen(function*() {
      const store = yield* countingConfigStore
      const { coordinator, stats } = yield* slowCoordinator(100)
      const servers = yield* Effect.all(
        [0, 1, 2].map(() => twoTier(store.store, coordinator))
      )
      const windows = 3

      /** At most `limit` in every window, and the whole of it in each window of the run (demand exceeds it). */
      const expectExact = (admitted: ReadonlyMap<number, number>, start: number, limit = LIMIT) => {
        for (const count of admitted.values()) expect(count).toBeLessThanOrEqual(limit)
        for (let w = 1; w <= windows; w++) expect(admitted.get(start + w * WINDOW_MS)).toBe(limit)
      }

      /**
       * Two callers per server, each checking `policy` at its own period (50 to 71 ms, so their phases
       * drift); counts admissions per window and checks that waited.
       */
      const hammer = (policy: string, start: number) =>
        Effect.gen(function*() {
          yield* TestClock.setTime(start)
          const end = start + windows * WINDOW_MS
          const admitted = new Map<number, number>()
          const tally = { waited: 0, denied: 0, outOfWindow: 0 }
          const caller = (server: RateLimiterService, periodMs: number) =>
            Effect.gen(function*() {
              while ((yield* TestClock.currentTimeMillis) < end) {
                const before = yield* TestClock.currentTimeMillis
                const decision: Decision = yield* server.check(policy, "k")
                const after = yield* TestClock.currentTimeMillis
                if (after > before) tally.waited++
                if (decision.allowed) {
                  admitted.set(decision.resetAt, (admitted.get(decision.resetAt) ?? 0) + 1)
                  // Spent inside the window whose budget paid for it.
                  if (!(after < decision.resetAt && decision.resetAt - after <= WINDOW_MS)) tally.outOfWindow++
                } else {
                  tally.denied++
                }
                yield* Effect.sleep(periodMs)
              }
            })
          const fiber = yield* Effect.fork(
            Effect.all(
              servers.flatMap((s, i) => [caller(s, PERIODS_MS[2 * i]!), caller(s, PERIODS_MS[2 * i + 1]!)]),
              { concurrency: "unbounded" }
            )
          )
          while (fiber.unsafePoll() === null) yield* TestClock.adjust(25)
          yield* Fiber.join(fiber)
          return { admitted, tally }
        })

      const low = yield* hammer("low", 0)
      expectExact(low.admitted, 0)
      expect(low.tally.outOfWindow).toBe(0)
      expect(low.tally.denied).toBeGreaterThan(0)
      expect(stats.inFlight).toBe(0)

      // The same demand on lowWater 0: the same bound, but more checks wait for the coordinator.
      const onDemand = yield* hammer("onDemand", 10_000)
      expectExact(onDemand.admitted, 10_000)
      expect(onDemand.tally.outOfWindow).toBe(0)
      console.log(
        `checks that waited for the coordinator: lowWater 3 ${low.tally.waited}, lowWater 0 ${onDemand.tally.waited}`
      )
      expect(low.tally.waited).toBeLessThan(onDemand.tally.waited)

      // Demand under the limit (about 100 per window for 130): refreshes run all the time, so some are in
      // flight at the boundaries and their grants, sized before a boundary, land after it. None of those
      // credits is spent in the next window.
      const late = stats.late
      const steady = yield* hammer("steady", 20_000)
      console.log(`grants that landed after their window ended: ${stats.late - late}`)
      expect(stats.late).toBeGreaterThan(late)
      expect(steady.tally.outOfWindow).toBe(0)
      for (const count of steady.admitted.values()) expect(count).toBeLessThanOrEqual(130)
    }))

  it.scoped("a key dropped from the table while its refresh is in flight is not put back when it lands", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const store = yield* countingConfigStore
      const { coordinator, gate, open, stats } = yield* slowCoordinator(0)
      const server = yield* twoTier(store.store, coordinator)
      const check = (key: string) => server.check("bounded", key)
      yield* check("a")
      yield* check("a")
      gate.key = "bounded:a"
      // 1 left (lowWater 1): the refresh of "a" is held in flight.
      expect(yield* check("a")).toMatchObject({ allowed: true, remaining: 1 })
      yield* settle(() => stats.inFlight === 1)
      expect(stats).toMatchObject({ calls: 2, inFlight: 1 })
      // maxKeys 2: "b" and "c" push "a" out of the table.
      yield* check("b")
      yield* check("c")
      expect(stats.calls).toBe(4)
      yield* open
      yield* settle(() => stats.inFlight === 0)
      expect(stats.inFlight).toBe(0)
      // The grant landed in the dropped holder only: "b" and "c" are still held (no lease)...
      expect(yield* check("b")).toMatchObject({ allowed: true, remaining: 2 })
      expect(yield* check("c")).toMatchObject({ allowed: true, remaining: 2 })
      expect(stats.calls).toBe(4)
      // ...and "a" starts afresh: a new lease of 4, not the 5 credits the dropped holder got.
      expect(yield* check("a")).toMatchObject({ allowed: true, remaining: 3 })
      expect(stats.calls).toBe(5)
    }))

  it.scoped("closing the wrapper's scope interrupts a refresh in flight", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const store = yield* countingConfigStore
      const { coordinator, stats } = yield* slowCoordinator(1000)
      const scope = yield* Scope.make()
      const server = yield* Scope.extend(twoTier(store.store, coordinator), scope)
      const first = yield* Effect.fork(server.check("bounded", "k"))
      while (first.unsafePoll() === null) yield* TestClock.adjust(100)
      expect(yield* Fiber.join(first)).toMatchObject({ allowed: true, remaining: 3 })
      yield* Effect.forEach([1, 2], () => server.check("bounded", "k")) // 1 left: a refresh is in flight
      expect(stats.inFlight).toBe(1)
      yield* Scope.close(scope, Exit.void)
      expect(stats.interrupted).toBe(1)
      expect(stats.inFlight).toBe(0)
    }))

  it.scoped("a coordinator's reserveCallback carries the background refreshes; a refusal waits for the boundary", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(200)
      const store = yield* countingConfigStore
      const { coordinator, release, stats } = yield* callbackCoordinator
      const server = yield* twoTier(store.store, coordinator)
      const check = server.check("callback", "k")
      // In line: 4 of the 6. The next check leaves 2 and sends a callback reservation.
      expect(yield* check).toMatchObject({ allowed: true, remaining: 3 })
      expect(yield* check).toMatchObject({ allowed: true, remaining: 2 })
      expect(stats).toEqual({ reserves: 1, callbacks: 1 })
      yield* release // the last 2 units
      yield* Effect.forEach([1, 2], () => check) // 2 left again: a second callback reservation
      expect(stats).toEqual({ reserves: 1, callbacks: 2 })
      yield* release // refused until the window ends at 1000
      expect((yield* Effect.forEach([1, 2], () => check)).every((d) => d.allowed)).toBe(true)
      yield* TestClock.setTime(400)
      expect(yield* check).toMatchObject({ allowed: false, remaining: 0, resetAt: 1000, retryAfterMs: 600 })
      expect(stats).toEqual({ reserves: 1, callbacks: 2 })
      expect(store.calls.check).toBe(0)
    }))

  it.scoped("after the wrapper's scope closes no callback reservation is sent; one already out still lands", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const store = yield* countingConfigStore
      const { coordinator, release, stats } = yield* callbackCoordinator
      const scope = yield* Scope.make()
      const server = yield* Scope.extend(twoTier(store.store, coordinator), scope)
      const check = server.check("bounded", "k")
      yield* Effect.forEach([1, 2, 3], () => check) // 1 left (lowWater 1): a callback reservation is out
      expect(stats).toEqual({ reserves: 1, callbacks: 1 })
      yield* Scope.close(scope, Exit.void)
      yield* release
      // Its grant of 4 landed: 5 credits; the spends down to the mark send nothing more.
      expect((yield* Effect.forEach([1, 2, 3, 4], () => check)).map((d) => d.remaining)).toEqual([4, 3, 2, 1])
      expect(stats).toEqual({ reserves: 1, callbacks: 1 })
      // At 0 the check reserves in line, as after a failed background refresh.
      yield* check
      expect(yield* check).toMatchObject({ allowed: true, remaining: 3 })
      expect(stats).toEqual({ reserves: 2, callbacks: 1 })
    }))

  it.scoped("a non-windowed strategy refreshes in the background through the store below", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const store = yield* countingConfigStore
      const coordinator = MemoryCoordinator.make()
      const server = yield* twoTier(store.store, coordinator)
      const decisions = yield* Effect.forEach([1, 2, 3], () => server.check("bucket", "k"))
      expect(decisions.every((d) => d.allowed)).toBe(true)
      // The first check leased 5; the third left 2 and leased the next 5 while it still had credits.
      expect(store.calls.check).toBe(2)
      yield* Effect.forEach([1, 2, 3, 4], () => server.check("bucket", "k"))
      expect(store.calls.check).toBe(2)
      yield* server.check("bucket", "k")
      expect(store.calls.check).toBe(3)
    }))
})
