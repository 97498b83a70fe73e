/**
 * `twoTier.returnIdleAfterMs` (TestClock-driven): a key that goes longer than that without a check loses
 * its leased credits, so its next check leases afresh from the shared budget; a key checked within it
 * keeps them. (The background sweep of keys never checked again only frees memory: no decision sees it.) On a windowed strategy the lease is a coordinator reservation, on
 * any other a check of `batch` units on the store below: both are counted here.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import { Coordinator, type CoordinatorService } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import * as RateLimiter from "../../src/services/RateLimiter.js"
import { countingStore } from "./support.js"

const policies = PolicyFile.parse(
  `
limiters:
  windowed:
    strategy: fixedWindow
    limit: 100
    windowMs: 60000
    twoTier: { mode: leased, batch: 10, windowCoupled: true, returnIdleAfterMs: 1s }
  bucket:
    strategy: tokenBucket
    capacity: 100
    refillPerSec: 1
    twoTier: { mode: leased, batch: 10, returnIdleAfterMs: 1s }
  kept:
    strategy: fixedWindow
    limit: 100
    windowMs: 60000
    twoTier: { mode: leased, batch: 10 }
`,
  "test"
)

const setup = Effect.gen(function*() {
  const set = yield* policies
  const inner = yield* Coordinator
  const reserved: Array<number> = []
  const coordinator: CoordinatorService = {
    store: inner.store,
    reserve: (strategy, key, wants) => {
      reserved.push(wants)
      return inner.reserve(strategy, key, wants)
    }
  }
  const { calls, store } = yield* countingStore(set)
  const scope = yield* Scope.make()
  const limiter = yield* Scope.extend(
    Effect.flatMap(TwoTier.make(store, coordinator), (wrapped) => RateLimiter.make(wrapped)),
    scope
  )
  return { limiter, reserved, calls, scope }
}).pipe(Effect.provide(MemoryCoordinator.layer()))

describe("TwoTier returnIdleAfterMs", () => {
  it.scoped("a key idle for longer than returnIdleAfterMs leases afresh; one checked within keeps its credits", () =>
    Effect.gen(function*() {
      const { limiter, reserved, scope } = yield* setup
      yield* TestClock.setTime(1)
      expect((yield* limiter.check("windowed", "a")).remaining).toBe(9)
      expect(reserved).toEqual([10])
      yield* TestClock.adjust(1000) // idle exactly 1000 ms: kept
      expect((yield* limiter.check("windowed", "a")).remaining).toBe(8)
      expect(reserved).toEqual([10])
      yield* TestClock.adjust(1001) // idle 1001 ms: its 8 credits are dropped
      expect((yield* limiter.check("windowed", "a")).remaining).toBe(9)
      expect(reserved).toEqual([10, 10])
      // Without returnIdleAfterMs, credits stay however long the key sleeps (within the window).
      expect((yield* limiter.check("kept", "a")).remaining).toBe(9)
      yield* TestClock.adjust(30_000)
      expect((yield* limiter.check("kept", "a")).remaining).toBe(8)
      expect(reserved).toEqual([10, 10, 10])
      yield* Scope.close(scope, Exit.void)
    }))

  it.scoped("on a store lease (tokenBucket) too: every key idle too long leases afresh; the scope closes cleanly", () =>
    Effect.gen(function*() {
      const { calls, limiter, scope } = yield* setup
      yield* TestClock.setTime(1)
      for (const key of ["a", "b", "c"]) yield* limiter.check("bucket", key)
      expect(calls.check).toBe(3) // one lease (a check of 10 units) per key on the store below
      yield* TestClock.adjust(500)
      yield* limiter.check("bucket", "a")
      expect(calls.check).toBe(3)
      yield* TestClock.adjust(2600) // all three idle for longer than 1 s (the background sweeps drop them too)
      for (const key of ["a", "b", "c"]) yield* limiter.check("bucket", key)
      expect(calls.check).toBe(6)
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust(10_000) // the sweep fiber went with its scope
    }))
})
