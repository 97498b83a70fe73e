/**
 * `RateLimiterAdmin` on the Memory door, under `TestClock`: reset, penalize, reward, block and unblock on
 * every rate strategy and on a token budget, what each writes (the decisions of the same limiter after
 * it), and the typed faults of bad input, which change nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { Policy, Strategy } from "../../src/Policy.js"
import { layer as frontLayer, RateLimiter } from "../../src/services/RateLimiter.js"
import * as RateLimiterAdmin from "../../src/services/RateLimiterAdmin.js"

const limiter = (name: string, strategy: Strategy): Policy => ({
  kind: "limiter",
  name,
  prefix: name,
  maxKeys: 100,
  strategy
})

/** Every rate strategy with a capacity of 5 units. */
const strategies: ReadonlyArray<readonly [string, Strategy]> = [
  ["gcra", { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }],
  ["tokenBucket", { kind: "tokenBucket", capacity: 5, refillPerSec: 5 }],
  ["fixedWindow", { kind: "fixedWindow", limit: 5, windowMs: 1000 }],
  ["slidingWindow", { kind: "slidingWindow", limit: 5, windowMs: 1000, buckets: 10 }],
  ["slidingWindowLog", { kind: "slidingWindowLog", limit: 5, windowMs: 1000 }]
]

const policies: ReadonlyArray<Policy> = [
  ...strategies.map(([name, strategy]) => limiter(name, strategy)),
  { kind: "meter", name: "llm", prefix: "llm", maxKeys: 100, budget: 10, windowMs: 1000, shared: false },
  {
    kind: "admitter",
    name: "pool",
    prefix: "pool",
    maxKeys: 100,
    concurrency: {
      algorithm: "fixed",
      minLimit: 2,
      maxLimit: 2,
      initialLimit: 2,
      backoffRatio: 0.5,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 10
    }
  },
  {
    kind: "admitter",
    name: "unified",
    prefix: "unified",
    maxKeys: 100,
    rate: { kind: "fixedWindow", limit: 3, windowMs: 60_000 },
    concurrency: {
      algorithm: "fixed",
      minLimit: 10,
      maxLimit: 10,
      initialLimit: 10,
      backoffRatio: 0.5,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 10
    }
  }
]

const store = MemoryBackend.layerStore({ policies })
const doors = Layer.merge(frontLayer(), RateLimiterAdmin.layer).pipe(Layer.provide(store))

const tools = Effect.all({ limiter: RateLimiter, admin: RateLimiterAdmin.RateLimiterAdmin })

describe("RateLimiterAdmin on the Memory door", () => {
  for (const [name] of strategies) {
    it.scoped(`${name}: penalize takes units, reward gives them back, reset makes the key fresh`, () =>
      Effect.gen(function*() {
        const { admin, limiter } = yield* tools
        yield* TestClock.setTime(10_000)
        expect((yield* limiter.check(name, "k")).remaining).toBe(4)
        const penalized = yield* admin.penalize(name, "k", 2)
        expect(penalized.remaining).toBe(2)
        expect((yield* limiter.peek(name, "k")).remaining).toBe(2)
        // Bounded at empty: a penalty beyond what is left leaves none.
        expect((yield* admin.penalize(name, "k", 50)).remaining).toBe(0)
        expect((yield* limiter.check(name, "k")).allowed).toBe(false)
        const rewarded = yield* admin.reward(name, "k", 3)
        expect(rewarded.remaining).toBe(3)
        expect((yield* limiter.check(name, "k", 3)).allowed).toBe(true)
        expect((yield* limiter.check(name, "k")).allowed).toBe(false)
        // Bounded at a fresh key's capacity.
        expect((yield* admin.reward(name, "k", 50)).remaining).toBe(5)
        yield* admin.penalize(name, "k", 5)
        yield* admin.reset(name, "k")
        expect(yield* limiter.peek(name, "k")).toEqual(yield* limiter.peek(name, "never-seen"))
      }).pipe(Effect.provide(doors)))

    it.scoped(`${name}: a blocked key is denied until the block ends, with resetAt at its end`, () =>
      Effect.gen(function*() {
        const { admin, limiter } = yield* tools
        yield* TestClock.setTime(50_000)
        yield* limiter.check(name, "k")
        const blocked = yield* admin.block(name, "k", "30 seconds")
        expect(blocked).toMatchObject({ allowed: false, remaining: 0, resetAt: 80_000, retryAfterMs: 30_000 })
        yield* TestClock.adjust(10_000)
        expect(yield* limiter.check(name, "k")).toMatchObject({
          allowed: false,
          remaining: 0,
          resetAt: 80_000,
          retryAfterMs: 20_000
        })
        expect((yield* limiter.checkMany(name, ["k", "other"])).map((d) => d.allowed)).toEqual([false, true])
        expect((yield* limiter.peek(name, "k")).allowed).toBe(false)
        expect((yield* limiter.forecast(name, "k")).spendableNow).toBe(0)
        yield* TestClock.adjust(20_000)
        expect((yield* limiter.check(name, "k")).allowed).toBe(true)
        // unblock lifts a block early; reset does too.
        yield* admin.block(name, "k", 60_000)
        expect((yield* admin.unblock(name, "k")).allowed).toBe(true)
        expect((yield* limiter.check(name, "k")).allowed).toBe(true)
        yield* admin.block(name, "k", 60_000)
        yield* admin.reset(name, "k")
        expect((yield* limiter.check(name, "k")).remaining).toBe(4)
      }).pipe(Effect.provide(doors)))
  }

  it.scoped("gcra: a penalty moves the TAT forward by units × T, a reward moves it back", () =>
    Effect.gen(function*() {
      const { admin, limiter } = yield* tools
      yield* TestClock.setTime(1000)
      expect((yield* admin.penalize("gcra", "k", 3)).resetAt).toBe(1600) // T = 200 ms
      expect((yield* admin.reward("gcra", "k", 1)).resetAt).toBe(1400)
      expect((yield* limiter.check("gcra", "k")).resetAt).toBe(1600)
    }).pipe(Effect.provide(doors)))

  it.scoped("slidingWindowLog: a reward removes the newest entries, so the oldest still age out first", () =>
    Effect.gen(function*() {
      const { admin, limiter } = yield* tools
      yield* TestClock.setTime(0)
      yield* limiter.check("slidingWindowLog", "k", 2)
      yield* TestClock.adjust(500)
      yield* limiter.check("slidingWindowLog", "k", 3)
      yield* admin.reward("slidingWindowLog", "k", 3)
      // The two entries at 0 leave at 1000: the reward took the three at 500.
      expect((yield* limiter.peek("slidingWindowLog", "k")).resetAt).toBe(1000)
      yield* TestClock.adjust(501)
      expect((yield* limiter.peek("slidingWindowLog", "k")).remaining).toBe(5)
    }).pipe(Effect.provide(doors)))

  it.scoped("a token budget: penalize spends, reward refunds, block refuses debits, reset forgets", () =>
    Effect.gen(function*() {
      const { admin, limiter } = yield* tools
      yield* TestClock.setTime(5000)
      expect((yield* limiter.debit("llm", "team", 4)).remaining).toBe(6)
      expect((yield* admin.penalize("llm", "team", 5)).remaining).toBe(1)
      expect((yield* admin.reward("llm", "team", 2)).remaining).toBe(3)
      yield* admin.block("llm", "team", 2000)
      expect(yield* limiter.debit("llm", "team", 1)).toMatchObject({ allowed: false, resetAt: 7000 })
      yield* admin.reset("llm", "team")
      expect((yield* limiter.debit("llm", "team", 1)).remaining).toBe(9)
    }).pipe(Effect.provide(doors)))

  it.scoped("a unified admitter: the admin acts on its rate axis (a penalty binds the next admission by rate)", () =>
    Effect.gen(function*() {
      const { admin, limiter } = yield* tools
      yield* TestClock.setTime(1000)
      expect((yield* admin.penalize("unified", "k", 3)).remaining).toBe(0)
      const denied = yield* limiter.leases.acquire("unified", "k")
      expect([denied.held, denied.bindingAxis]).toEqual([false, "rate"])
      yield* admin.reward("unified", "k", 1)
      const held = yield* limiter.leases.acquire("unified", "k")
      expect(held.held).toBe(true)
      yield* limiter.leases.release(held.leaseId, false)
      yield* admin.block("unified", "k", 5000)
      expect((yield* limiter.leases.acquire("unified", "k")).decision).toMatchObject({ allowed: false, resetAt: 6000 })
      yield* admin.reset("unified", "k")
      expect((yield* limiter.leases.acquire("unified", "k")).decision.remaining).toBe(2)
    }).pipe(Effect.provide(doors)))

  it.scoped("bad input fails with a typed error, in the front's order, and changes nothing", () =>
    Effect.gen(function*() {
      const { admin, limiter } = yield* tools
      yield* TestClock.setTime(1000)
      yield* limiter.check("gcra", "k", 2)
      const before = yield* limiter.peek("gcra", "k")
      const faults = yield* Effect.all([
        Effect.flip(admin.reset("nope", "k")),
        Effect.flip(admin.penalize("x".repeat(300), "k", 1)),
        Effect.flip(admin.reward("pool", "k", 1)),
        Effect.flip(admin.penalize("gcra", "", 1)),
        Effect.flip(admin.penalize("gcra", "k", 0)),
        Effect.flip(admin.reward("gcra", "k", 1.5)),
        Effect.flip(admin.reward("gcra", "k", Number.NaN)),
        Effect.flip(admin.block("gcra", "k", 0)),
        Effect.flip(admin.block("gcra", "k", "1.5 millis")),
        Effect.flip(admin.block("gcra", "k", Number.POSITIVE_INFINITY)),
        Effect.flip(admin.block("gcra", "k", RateLimiterAdmin.MAX_BLOCK_MS + 1)),
        Effect.flip(admin.block("nope", "", -1))
      ])
      expect(faults.map((f) => [f._tag, "argument" in f ? f.argument : ""])).toEqual([
        ["PolicyNotFound", ""],
        ["InvalidArgument", "policy"],
        ["OperationNotSupported", ""],
        ["InvalidArgument", "key"],
        ["InvalidArgument", "units"],
        ["InvalidArgument", "units"],
        ["InvalidArgument", "units"],
        ["InvalidArgument", "duration"],
        ["InvalidArgument", "duration"],
        ["InvalidArgument", "duration"],
        ["InvalidArgument", "duration"],
        ["PolicyNotFound", ""]
      ])
      expect(yield* limiter.peek("gcra", "k")).toEqual(before)
      expect((yield* limiter.check("gcra", "k")).allowed).toBe(true)
    }).pipe(Effect.provide(doors)))
})
