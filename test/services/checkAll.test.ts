/**
 * The multi-dimension check (`checkAll`, `limitAll`) through the front on the Memory door: all or nothing
 * (a denial by one dimension consumes nothing from the others), the verdict and its binding dimension,
 * the validation order (the array, then each dimension's policy, key, cost, and no repeated (policy, key))
 * with nothing changed by a refused call, the kinds served (limiters of every strategy and meters; an
 * admitter or a fair escrow is `OperationNotSupported`), a wrapped store that does not serve it, and the
 * Service door, whose wire has no multi-check. Randomized all-or-nothing and differential properties run
 * on Memory and Redis side by side in test/redis/checkAll.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { Coordinator } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import type { MultiDecision } from "../../src/Decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { LimiterPolicy, Policy, Strategy } from "../../src/Policy.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import {
  type DimensionCheck,
  limitAll,
  make as makeFront,
  MAX_CHECK_ALL,
  NO_WIRE_CHECK_ALL,
  RateLimiter,
  type RateLimiterService
} from "../../src/services/RateLimiter.js"
import { mapLocal } from "../../src/services/RateLimiterStore.js"
import { serviceOverMemory } from "../service/support.js"

const HOUR = 3_600_000
const T0 = 1_800_000_000_000

/** A limiter policy named `name` (its prefix too) over `strategy`. */
const limiterOf = (name: string, strategy: Strategy): LimiterPolicy => ({
  kind: "limiter",
  name,
  prefix: name,
  maxKeys: 1000,
  strategy
})

const one = { minLimit: 1, maxLimit: 1, initialLimit: 1 }

const policies: ReadonlyArray<Policy> = [
  limiterOf("user", { kind: "gcra", limit: 3, periodMs: HOUR, burst: 3 }),
  limiterOf("org", { kind: "fixedWindow", limit: 2, windowMs: HOUR }),
  { kind: "meter", name: "tokens", prefix: "t", maxKeys: 1000, budget: 100, windowMs: HOUR, shared: false },
  limiterOf("log", { kind: "slidingWindowLog", limit: 5, windowMs: HOUR }),
  limiterOf("bucket", { kind: "tokenBucket", capacity: 4, refillPerSec: 0.001 }),
  limiterOf("window", { kind: "slidingWindow", limit: 4, windowMs: HOUR, buckets: 6 }),
  limiterOf("monthly", { kind: "quota", resetCadence: "calendar-month", limit: 4, offsetMinutes: 0 }),
  {
    kind: "admitter",
    name: "pool",
    prefix: "p",
    maxKeys: 1000,
    concurrency: { algorithm: "fixed", ...one, backoffRatio: 0.5, smoothing: 0.2, tolerance: 2, rttWindow: 10 }
  }
]

/** What every dimension of `checks` reads now, without consuming: its peek and forecast. */
const readAll = (limiter: RateLimiterService, checks: ReadonlyArray<DimensionCheck>) =>
  Effect.forEach(
    checks,
    (c) => Effect.all([limiter.peek(c.policy, c.key), limiter.forecast(c.policy, c.key, c.cost ?? 1)])
  )

const memory = Effect.gen(function*() {
  yield* TestClock.setTime(T0)
  return yield* MemoryBackend.make({ policies })
})

const shape = (verdict: MultiDecision) => ({
  allowed: verdict.allowed,
  binding: verdict.binding,
  decisions: verdict.decisions.map((d) => [d.allowed, d.remaining, d.retryAfterMs])
})

describe("checkAll on the Memory door", () => {
  it.scoped("all or nothing: a dimension that denies leaves every other dimension as it was", () =>
    Effect.gen(function*() {
      const limiter = yield* memory
      const checks: ReadonlyArray<DimensionCheck> = [
        { policy: "user", key: "alice" },
        { policy: "org", key: "acme" },
        { policy: "tokens", key: "acme", cost: 40 }
      ]
      const first = yield* limiter.checkAll(checks)
      expect(shape(first)).toEqual({
        allowed: true,
        binding: 1, // org has the fewest units left
        decisions: [[true, 2, 0], [true, 1, 0], [true, 60, 0]]
      })
      yield* limiter.checkAll(checks) // org's last unit
      const before = yield* readAll(limiter, checks)
      const denied = yield* limiter.checkAll(checks)
      expect(denied.allowed).toBe(false)
      expect(denied.binding).toBe(1)
      expect(denied.bindingDecision.allowed).toBe(false)
      // The others would have allowed on their own, and consumed nothing.
      expect(denied.decisions.map((d) => d.allowed)).toEqual([true, false, true])
      expect(yield* readAll(limiter, checks)).toEqual(before)
      // A single check on user still has its unit: the multi-check took none.
      expect((yield* limiter.check("user", "alice")).remaining).toBe(0)
    }))

  it.scoped("every limiter strategy and a meter in one multi-check; the binding denial is the longest wait", () =>
    Effect.gen(function*() {
      const limiter = yield* memory
      const all: ReadonlyArray<DimensionCheck> = [
        { policy: "user", key: "k" },
        { policy: "org", key: "k" },
        { policy: "tokens", key: "k", cost: 10 },
        { policy: "log", key: "k" },
        { policy: "bucket", key: "k" },
        { policy: "window", key: "k" },
        { policy: "monthly", key: "k" }
      ]
      expect((yield* limiter.checkAll(all)).allowed).toBe(true)
      expect((yield* limiter.checkAll(all)).allowed).toBe(true)
      // org (fixed window, 2 per hour) is spent; user (gcra, 3 per hour) has one left.
      const denied = yield* limiter.checkAll(all)
      expect(denied.allowed).toBe(false)
      expect(denied.decisions.filter((d) => !d.allowed).length).toBe(1)
      expect(denied.binding).toBe(1)
      // user spends its last unit alone; now both deny and the longer wait binds.
      expect((yield* limiter.check("user", "k")).allowed).toBe(true)
      const both = yield* limiter.checkAll(all)
      const waits = both.decisions.map((d) => d.allowed ? -1 : d.retryAfterMs)
      expect(both.binding).toBe(waits.indexOf(Math.max(...waits)))
      expect(both.decisions.filter((d) => !d.allowed).length).toBe(2)
    }))

  it.scoped("limitAll fails with RateLimited carrying the binding dimension's policy, key and decision", () =>
    Effect.gen(function*() {
      const limiter = yield* memory
      const checks: ReadonlyArray<DimensionCheck> = [{ policy: "user", key: "a" }, { policy: "org", key: "b" }]
      const run = Effect.provideService(limitAll(checks), RateLimiter, limiter)
      expect((yield* run).allowed).toBe(true)
      expect((yield* run).allowed).toBe(true)
      const error = yield* Effect.flip(run)
      expect(error._tag).toBe("RateLimited")
      if (error._tag !== "RateLimited") return
      expect([error.policy, error.key, error.decision.allowed]).toEqual(["org", "b", false])
      expect(error.decision.retryAfterMs).toBeGreaterThan(0)
    }))

  it.scoped("bad input is refused in the one order and changes nothing", () =>
    Effect.gen(function*() {
      const limiter = yield* memory
      const good = { policy: "user", key: "alice" }
      const before = yield* readAll(limiter, [good])
      const fault = (checks: ReadonlyArray<DimensionCheck>) =>
        Effect.map(Effect.flip(limiter.checkAll(checks)), (e) => [e._tag, "argument" in e ? e.argument : e.message])

      expect(yield* fault([])).toEqual(["InvalidArgument", "checks"])
      expect(yield* fault(Array.from({ length: MAX_CHECK_ALL + 1 }, (_, i) => ({ policy: "user", key: `k${i}` }))))
        .toEqual(["InvalidArgument", "checks"])
      expect(yield* fault([good, null as unknown as DimensionCheck])).toEqual(["InvalidArgument", "checks[1]"])
      expect((yield* fault([good, { policy: "nope", key: "" }]))[0]).toBe("PolicyNotFound")
      const admitter = yield* Effect.flip(limiter.checkAll([good, { policy: "pool", key: "x" }]))
      expect(admitter._tag).toBe("OperationNotSupported")
      expect(admitter.message).toContain("checkAll")
      // Policy before key, key before cost, each dimension in turn.
      expect(yield* fault([good, { policy: "org", key: "", cost: -1 }])).toEqual(["InvalidArgument", "checks[1].key"])
      expect(yield* fault([good, { policy: "org", key: "x", cost: 1.5 }])).toEqual([
        "InvalidArgument",
        "checks[1].cost"
      ])
      // More than the policy could ever admit, nor its wait be stated (its maxCost).
      expect(yield* fault([{ policy: "bucket", key: "x", cost: 2 ** 52 }])).toEqual([
        "InvalidArgument",
        "checks[0].cost"
      ])
      // The same (policy, key) twice is refused, not summed.
      expect(yield* fault([good, { policy: "org", key: "alice" }, good])).toEqual(["InvalidArgument", "checks[2]"])
      // The same key under two policies is two dimensions.
      expect((yield* limiter.checkAll([good, { policy: "org", key: "alice" }])).allowed).toBe(true)
      expect((yield* readAll(limiter, [good]))[0]![0].remaining).toBe(before[0]![0].remaining - 1)
    }))

  it.scoped("a store whose wrappers do not serve the multi-check answers OperationNotSupported", () =>
    Effect.gen(function*() {
      const store = yield* MemoryBackend.makeStore({ policies })
      const wrapped = yield* makeFront(mapLocal(store, { limiter: (_, bound) => bound }))
      const error = yield* Effect.flip(wrapped.checkAll([{ policy: "user", key: "a" }]))
      expect(error._tag).toBe("OperationNotSupported")
      // A wrapper of other operations only passes it through.
      const passing = yield* makeFront(mapLocal(store, { admitter: (_, bound) => bound }))
      yield* TestClock.setTime(T0)
      expect((yield* passing.checkAll([{ policy: "user", key: "a" }])).allowed).toBe(true)
    }))
})

describe("checkAll on a full key table and under TwoTier", () => {
  it.scoped("a table full of live keys (onFull: deny) refusing a new key denies the whole multi-check", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const small: ReadonlyArray<Policy> = [
        { ...limiterOf("tight", { kind: "fixedWindow", limit: 5, windowMs: HOUR }), maxKeys: 2 },
        limiterOf("wide", { kind: "fixedWindow", limit: 5, windowMs: HOUR })
      ]
      const limiter = yield* MemoryBackend.make({ policies: small, onFull: "deny" })
      // Two live keys fill "tight".
      yield* limiter.check("tight", "a")
      yield* limiter.check("tight", "b")
      const checks = [{ policy: "wide", key: "w" }, { policy: "tight", key: "new" }]
      const verdict = yield* limiter.checkAll(checks)
      expect([verdict.allowed, verdict.binding]).toEqual([false, 1])
      expect(verdict.decisions[0]!.allowed).toBe(true)
      expect(verdict.bindingDecision.retryAfterMs).toBeGreaterThan(0)
      // Nothing taken from "wide"; a held key of "tight" still multi-checks.
      expect((yield* limiter.peek("wide", "w")).remaining).toBe(5)
      expect((yield* limiter.checkAll([{ policy: "wide", key: "w" }, { policy: "tight", key: "a" }])).allowed).toBe(
        true
      )
    }))

  it.scoped("TwoTier: a leased policy in a multi-check is OperationNotSupported; others pass through", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const leased: ReadonlyArray<Policy> = [
        {
          ...limiterOf("leased", { kind: "fixedWindow", limit: 20, windowMs: 1000 }),
          twoTier: { mode: "leased", batch: 4, lowWater: 0, windowCoupled: true }
        },
        limiterOf("plain", { kind: "fixedWindow", limit: 3, windowMs: HOUR })
      ]
      const store = yield* MemoryBackend.makeStore({ policies: leased })
      const limiter = yield* makeFront(yield* TwoTier.make(store, yield* Coordinator))
      const error = yield* Effect.flip(
        limiter.checkAll([{ policy: "plain", key: "k" }, { policy: "leased", key: "k" }])
      )
      expect(error._tag).toBe("OperationNotSupported")
      expect(error.message).toContain("leased")
      expect((yield* limiter.peek("plain", "k")).remaining).toBe(3)
      expect((yield* limiter.checkAll([{ policy: "plain", key: "k" }])).allowed).toBe(true)
    }).pipe(Effect.provide(MemoryCoordinator.layer())))
})

describe("checkAll on the Service door", () => {
  it.scoped("answers OperationNotSupported: the wire has no multi-check", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const error = yield* Effect.flip(limiter.checkAll([{ policy: "user", key: "a" }, { policy: "org", key: "a" }]))
      expect(error._tag).toBe("OperationNotSupported")
      if (error._tag !== "OperationNotSupported") return
      expect([error.policy, error.operation, error.reason]).toEqual(["user", "checkAll", NO_WIRE_CHECK_ALL])
      // Nothing was consumed on the server.
      expect((yield* limiter.peek("user", "a")).remaining).toBe(3)
    }).pipe(Effect.provide(serviceOverMemory(policies))))
})
