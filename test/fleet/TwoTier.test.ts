/**
 * The two-tier wrapper over the Memory door and the in-process coordinator (TestClock-driven): leased
 * policies answer from local credits and several "servers" (wrappers) on one coordinator admit at most
 * `limit` per window when window-coupled; uncoupled leftovers carry over within `limit + N × (batch − 1)`;
 * cached-deny spares the store; strict and plain policies pass through; federated checks lease from the
 * domain's budget; peek/forecast are unsupported; bad input (caught by the front) changes nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { Coordinator, federatedKey } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import * as RateLimiter from "../../src/services/RateLimiter.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import { countingStore } from "./support.js"

const policies = PolicyFile.parse(
  `
limiters:
  plain:
    strategy: fixedWindow
    limit: 3
    windowMs: 1000
  coupled:
    strategy: fixedWindow
    limit: 20
    windowMs: 1000
    twoTier:
      mode: leased
      batch: 4
      windowCoupled: true
  carried:
    strategy: fixedWindow
    limit: 20
    windowMs: 1000
    twoTier:
      mode: leased
      batch: 4
  sliding:
    strategy: slidingWindow
    limit: 12
    windowMs: 1000
    buckets: 4
    twoTier:
      mode: leased
      batch: 5
      windowCoupled: true
  bucket:
    strategy: tokenBucket
    capacity: 6
    refillPerSec: 1
    twoTier:
      mode: leased
      batch: 3
  guarded:
    strategy: fixedWindow
    limit: 2
    windowMs: 1000
    twoTier:
      mode: cached-deny
  exact:
    strategy: fixedWindow
    limit: 2
    windowMs: 1000
    twoTier:
      mode: strict
  global:
    strategy: fixedWindow
    limit: 10
    windowMs: 1000
    federated:
      batch: 3
`,
  "test"
)

const setup = Effect.gen(function*() {
  const set = yield* policies
  const coordinator = yield* Coordinator
  const { calls, store } = yield* countingStore(set)
  /**
   * A "server": its own wrapper (its own L1 credits) over the shared store and coordinator, with the
   * front on top, in the test's scope.
   */
  const server = () => Effect.flatMap(TwoTier.make(store, coordinator), (wrapped) => RateLimiter.make(wrapped))
  return { server, store: calls, coordinator }
}).pipe(Effect.provide(MemoryCoordinator.layer()))

const run = (limiter: RateLimiterService, policy: string, key: string, times: number) =>
  Effect.forEach(Array.from({ length: times }), () => limiter.check(policy, key))

describe("TwoTier", () => {
  it.scoped("window-coupled leasing: several servers on one budget admit at most limit per window", () =>
    Effect.gen(function*() {
      const { server } = yield* setup
      const servers = yield* Effect.all([server(), server(), server()])
      for (let window = 0; window < 4; window++) {
        yield* TestClock.setTime(window * 1000 + 1)
        let admitted = 0
        for (let round = 0; round < 12; round++) {
          for (const s of servers) {
            const decision = yield* s.check("coupled", "k")
            if (decision.allowed) {
              admitted++
              expect(decision.resetAt).toBe((window + 1) * 1000)
            }
          }
          yield* TestClock.adjust(50)
        }
        // Partial grants let the fleet use the whole budget, and never more.
        expect(admitted).toBe(20)
      }
    }))

  it.scoped("without coupling, leftovers carry over: at most limit + N × (batch − 1) in a window", () =>
    Effect.gen(function*() {
      const { server } = yield* setup
      const servers = yield* Effect.all([server(), server(), server()])
      yield* TestClock.setTime(999)
      // Each server leases a batch and spends one unit just before the boundary.
      for (const s of servers) expect((yield* s.check("carried", "k")).allowed).toBe(true)
      yield* TestClock.setTime(1000)
      let admitted = 0
      for (let round = 0; round < 20; round++) {
        for (const s of servers) if ((yield* s.check("carried", "k")).allowed) admitted++
      }
      expect(admitted).toBe(20 + 3 * 3)
    }))

  it.scoped("a sliding-window policy leases per tick and stays within its estimate", () =>
    Effect.gen(function*() {
      const { server } = yield* setup
      const a = yield* server()
      const b = yield* server()
      yield* TestClock.setTime(1_000_000)
      const first = yield* Effect.all([run(a, "sliding", "k", 10), run(b, "sliding", "k", 10)])
      const admitted = first.flat().filter((d) => d.allowed).length
      expect(admitted).toBe(12)
      // A quarter-window later only the oldest tick's weight has decayed: still nothing left.
      yield* TestClock.adjust(250)
      expect((yield* a.check("sliding", "k")).allowed).toBe(false)
      yield* TestClock.adjust(1000)
      expect((yield* run(a, "sliding", "k", 12)).filter((d) => d.allowed).length).toBe(12)
    }))

  it.scoped("leasing on a non-windowed strategy takes whole batches from the store", () =>
    Effect.gen(function*() {
      const { server, store } = yield* setup
      const s = yield* server()
      yield* TestClock.setTime(5000)
      const decisions = yield* run(s, "bucket", "k", 8)
      // Two batches of 3 fit the bucket of 6; the third batch does not.
      expect(decisions.filter((d) => d.allowed).length).toBe(6)
      expect(decisions[6]).toMatchObject({ allowed: false, limit: 6 })
      expect(store.check).toBe(3)
    }))

  it.scoped("cached-deny answers a blocked key locally until its retry time", () =>
    Effect.gen(function*() {
      const { server, store } = yield* setup
      const s = yield* server()
      yield* TestClock.setTime(200)
      const decisions = yield* run(s, "guarded", "k", 6)
      expect(decisions.map((d) => d.allowed)).toEqual([true, true, false, false, false, false])
      expect(decisions[3]).toMatchObject({ allowed: false, retryAfterMs: 800, resetAt: 1000 })
      expect(store.check).toBe(3)
      yield* TestClock.setTime(1000)
      expect((yield* s.check("guarded", "k")).allowed).toBe(true)
      expect(store.check).toBe(4)
    }))

  it.scoped("strict and plain policies go to the store on every check, peek included", () =>
    Effect.gen(function*() {
      const { server, store } = yield* setup
      const s = yield* server()
      yield* TestClock.setTime(100)
      yield* run(s, "exact", "k", 3)
      yield* run(s, "plain", "k", 2)
      expect(store.check).toBe(5)
      expect((yield* s.peek("exact", "k")).allowed).toBe(false)
      expect((yield* s.peek("plain", "k")).remaining).toBe(1)
    }))

  it.scoped("federated checks lease from the domain's budget, shared with direct reservations", () =>
    Effect.gen(function*() {
      const { coordinator, server } = yield* setup
      const set = yield* policies
      const global = set.policies.find((p) => p.name === "global")!
      expect(global.kind).toBe("limiter")
      yield* TestClock.setTime(3000)
      // A remote client took 8 of domain "api"'s 10 units this window.
      if (global.kind === "limiter" && global.strategy.kind === "fixedWindow") {
        expect((yield* coordinator.reserve(global.strategy, federatedKey("tk:fed", "api"), 8)).granted).toBe(8)
      }
      const s = yield* server()
      const decisions = yield* run(s, "global", "api", 4)
      expect(decisions.map((d) => d.allowed)).toEqual([true, true, false, false])
      expect(decisions[2]).toMatchObject({ limit: 10, remaining: 0, resetAt: 4000, retryAfterMs: 1000 })
      // Another domain has its own budget.
      expect((yield* s.check("global", "web")).allowed).toBe(true)
    }))

  it.scoped("peek and forecast on leased, cached-deny and federated policies are unsupported", () =>
    Effect.gen(function*() {
      const { server } = yield* setup
      const s = yield* server()
      for (const policy of ["coupled", "guarded", "global", "bucket"]) {
        const peek = yield* Effect.flip(s.peek(policy, "k"))
        expect(peek).toMatchObject({ _tag: "OperationNotSupported", policy, operation: "peek" })
        const forecast = yield* Effect.flip(s.forecast(policy, "k"))
        expect(forecast).toMatchObject({ _tag: "OperationNotSupported", policy, operation: "forecast" })
      }
    }))

  it.scoped("bad input fails with InvalidArgument and leases nothing; unknown policies are PolicyNotFound", () =>
    Effect.gen(function*() {
      const { server } = yield* setup
      const s = yield* server()
      yield* TestClock.setTime(100)
      expect((yield* Effect.flip(s.check("coupled", "k", 0)))._tag).toBe("InvalidArgument")
      expect((yield* Effect.flip(s.check("coupled", "", 1)))._tag).toBe("InvalidArgument")
      expect((yield* Effect.flip(s.checkMany("coupled", ["a", ""], 1)))._tag).toBe("InvalidArgument")
      expect((yield* Effect.flip(s.check("nope", "k")))._tag).toBe("PolicyNotFound")
      // The whole budget is still there.
      const many = yield* s.checkMany("coupled", Array.from({ length: 21 }, () => "k"))
      expect(many.filter((d) => d.allowed).length).toBe(20)
    }))
})
