/**
 * Worked examples of peek and forecast per strategy (hand-computed), the Redis-shape decoders, and the
 * memory shape of the sliding-window log under huge costs.
 */
import { describe, expect, it } from "@effect/vitest"
import * as FixedWindow from "../../src/engine/fixedWindow.js"
import * as Gcra from "../../src/engine/gcra.js"
import * as SlidingWindow from "../../src/engine/slidingWindow.js"
import * as SlidingWindowLog from "../../src/engine/slidingWindowLog.js"
import * as TokenBucket from "../../src/engine/tokenBucket.js"
import * as TokenBudget from "../../src/engine/tokenBudget.js"
import type { RateEngine } from "../../src/engine/types.js"

/** Runs allowed checks `[now, cost]` in order from a fresh key and returns the state. */
const after = <S>(engine: RateEngine<S>, checks: ReadonlyArray<readonly [number, number]>): S | undefined => {
  let state: S | undefined = undefined
  for (const [now, cost] of checks) {
    const step = engine.check(state, now, cost)
    expect(step.decision.allowed).toBe(true)
    state = step.state
  }
  return state
}

describe("gcra", () => {
  // T = 100 ms, tau = 500 ms.
  const engine = Gcra.make({ limit: 10, periodMs: 1000, burst: 5 })

  it("a fresh key is full", () => {
    expect(engine.forecast(undefined, 0, 1)).toEqual({ spendableNow: 5, nextReplenishAt: 0, fullAt: 0 })
    expect(engine.peek(undefined, 0)).toEqual({ allowed: true, limit: 5, remaining: 5, resetAt: 0, retryAfterMs: 0 })
  })

  it("after 3 units: 2 left, one more at 100, full at 300", () => {
    const state = after(engine, [[0, 1], [0, 1], [0, 1]])
    expect(state).toEqual({ tat: 300, expiresAt: 300 })
    expect(engine.peek(state, 0)).toEqual({ allowed: true, limit: 5, remaining: 2, resetAt: 300, retryAfterMs: 0 })
    expect(engine.forecast(state, 0, 2)).toEqual({ spendableNow: 1, nextReplenishAt: 100, fullAt: 300 })
    expect(engine.forecast(state, 0, 3)).toEqual({ spendableNow: 0, nextReplenishAt: 100, fullAt: 300 })
  })

  it("a denied peek is the cost-1 check's denial", () => {
    const state = after(engine, [[0, 5]])
    expect(engine.peek(state, 0)).toEqual(engine.check(state, 0, 1).decision)
    expect(engine.peek(state, 0)).toEqual({ allowed: false, limit: 5, remaining: 0, resetAt: 500, retryAfterMs: 100 })
  })

  it("counts past the simulation limit in closed form", () => {
    const big = Gcra.make({ limit: 1_000_000, periodMs: 1_000_000, burst: 1_000_000 })
    expect(big.forecast(undefined, 1_700_000_000_000, 1).spendableNow).toBe(1_000_000)
    expect(big.forecast(undefined, 1_700_000_000_000, 3).spendableNow).toBe(333_333)
  })
})

describe("tokenBucket", () => {
  // r = 0.005 tokens/ms.
  const engine = TokenBucket.make({ capacity: 10, refillPerSec: 5 })

  it("after 4 tokens: 6 left, the 7th at 200, full at 800", () => {
    const state = after(engine, [[0, 4]])
    expect(state).toEqual({ tokens: 6, last: 0, expiresAt: 2000 })
    expect(engine.peek(state, 0)).toEqual({ allowed: true, limit: 10, remaining: 6, resetAt: 800, retryAfterMs: 0 })
    expect(engine.forecast(state, 0, 4)).toEqual({ spendableNow: 1, nextReplenishAt: 200, fullAt: 800 })
    expect(engine.forecast(state, 800, 4)).toEqual({ spendableNow: 2, nextReplenishAt: 800, fullAt: 800 })
  })
})

describe("fixedWindow", () => {
  const engine = FixedWindow.make({ limit: 5, windowMs: 1000 })

  it("capacity returns at the window's end", () => {
    const state = after(engine, [[100, 3]])
    expect(state).toEqual({ start: 0, count: 3, expiresAt: 1000 })
    expect(engine.peek(state, 200)).toEqual({ allowed: true, limit: 5, remaining: 2, resetAt: 1000, retryAfterMs: 0 })
    expect(engine.forecast(state, 200, 2)).toEqual({ spendableNow: 1, nextReplenishAt: 1000, fullAt: 1000 })
    expect(engine.forecast(state, 1000, 2)).toEqual({ spendableNow: 2, nextReplenishAt: 1000, fullAt: 1000 })
  })
})

describe("slidingWindow", () => {
  // w = 100 ms; 6 units in tick 0 count fully until t = 1000, then decay over tick 10.
  const engine = SlidingWindow.make({ limit: 10, windowMs: 1000, buckets: 10 })

  it("the oldest tick decays: one more unit at 1017, full at 1100", () => {
    const state = after(engine, [[0, 6]])
    expect(state?.slots[0]).toEqual({ index: 0, count: 6 })
    expect(state?.slots).toHaveLength(11)
    expect(state?.expiresAt).toBe(1100)
    expect(engine.peek(state, 500)).toEqual({ allowed: true, limit: 10, remaining: 4, resetAt: 1600, retryAfterMs: 0 })
    expect(engine.forecast(state, 500, 1)).toEqual({ spendableNow: 4, nextReplenishAt: 1017, fullAt: 1100 })
    expect(engine.peek(state, 1016).remaining).toBe(4)
    expect(engine.peek(state, 1017).remaining).toBe(5)
  })

  it("decodes the Redis hash into the same state the engine writes", () => {
    let state: SlidingWindow.State | undefined = after(engine, [[0, 6], [500, 4]])
    const decoded = SlidingWindow.fromHash(10, { "0": "0:6", "5": "5:4" }, state!.expiresAt)
    expect(decoded).toEqual(state)
    state = decoded
    expect(engine.check(state, 1000, 5).decision).toEqual({
      allowed: false,
      limit: 10,
      remaining: 0,
      resetAt: 2100,
      retryAfterMs: 84
    })
  })
})

describe("slidingWindowLog", () => {
  const engine = SlidingWindowLog.make({ limit: 5, windowMs: 1000 })

  it("capacity returns as runs age out", () => {
    const state = after(engine, [[0, 2], [100, 1]])
    expect(state).toEqual({ runs: [{ at: 0, count: 2 }, { at: 100, count: 1 }], expiresAt: 1100 })
    expect(engine.peek(state, 200)).toEqual({ allowed: true, limit: 5, remaining: 2, resetAt: 1000, retryAfterMs: 0 })
    expect(engine.forecast(state, 200, 1)).toEqual({ spendableNow: 2, nextReplenishAt: 1000, fullAt: 1100 })
    expect(engine.check(state, 200, 4).decision).toEqual({
      allowed: false,
      limit: 5,
      remaining: 2,
      resetAt: 1000,
      retryAfterMs: 800 // k = 3 + 4 - 5 = 2: the 2nd oldest entry (score 0) leaves at 1000
    })
  })

  it("keeps one run per instant, whatever the cost", () => {
    const huge = SlidingWindowLog.make({ limit: 2 ** 52, windowMs: 1000 })
    const state = after(huge, [[0, 2 ** 50], [0, 2 ** 50], [0, 1], [1, 2 ** 50]])
    expect(state?.runs).toEqual([{ at: 0, count: 2 ** 51 + 1 }, { at: 1, count: 2 ** 50 }])
  })

  it("decodes sorted-set scores into runs", () => {
    expect(SlidingWindowLog.fromScores([100, 0, 0], 1100)).toEqual({
      runs: [{ at: 0, count: 2 }, { at: 100, count: 1 }],
      expiresAt: 1100
    })
  })
})

describe("tokenBudget", () => {
  const engine = TokenBudget.make({ budget: 10, windowMs: 1000 })

  it("peek, forecast and the module-level functions", () => {
    const state = engine.debit(undefined, 0, 4).state
    expect(state).toEqual({ start: 0, spent: 4, expiresAt: 1000 })
    expect(engine.peek(state, 500)).toEqual({ allowed: true, limit: 10, remaining: 6, resetAt: 1000, retryAfterMs: 0 })
    // 4 < 10, 8 < 10, then 12: two debits of 4 (the second crosses).
    expect(engine.forecast(state, 500, 4)).toEqual({ spendableNow: 2, nextReplenishAt: 1000, fullAt: 1000 })
    expect(TokenBudget.debit({ budget: 10, windowMs: 1000 }, state, 500, 7).decision).toEqual({
      allowed: true,
      limit: 10,
      remaining: 0,
      resetAt: 1000,
      retryAfterMs: 0
    })
    expect(TokenBudget.expiresAt(state!)).toBe(1000)
  })
})
