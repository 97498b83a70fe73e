/**
 * The concurrency guard: the limit stays within [minLimit, maxLimit], a slot is only taken below the
 * limit, and each algorithm moves the limit the documented way.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { type ConcurrencyOptions, Guard } from "../../src/engine/concurrency.js"

const options = (overrides: Partial<ConcurrencyOptions>): ConcurrencyOptions => ({
  algorithm: "gradient2",
  minLimit: 2,
  maxLimit: 50,
  initialLimit: 10,
  backoffRatio: 0.9,
  smoothing: 0.2,
  tolerance: 2,
  rttWindow: 10,
  ...overrides
})

/** Holds `n` slots (or as many as the guard gives), returning how many were taken. */
const fill = (guard: Guard, n: number): number => {
  let taken = 0
  while (taken < n && guard.tryAcquire()) taken++
  return taken
}

describe("concurrency Guard", () => {
  it("keeps the limit in bounds and only admits below it (property)", () => {
    const config = fc
      .record({
        algorithm: fc.constantFrom("fixed" as const, "aimd" as const, "gradient2" as const),
        minLimit: fc.integer({ min: 1, max: 20 }),
        span: fc.integer({ min: 0, max: 60 }),
        initialOffset: fc.integer({ min: -5, max: 80 }),
        backoffRatio: fc.double({ min: 0.5, max: 0.999, noNaN: true }),
        smoothing: fc.double({ min: 0.01, max: 1, noNaN: true }),
        tolerance: fc.double({ min: 1, max: 5, noNaN: true }),
        rttWindow: fc.integer({ min: 1, max: 30 })
      })
      .map(({ initialOffset, minLimit, span, ...rest }): ConcurrencyOptions => ({
        ...rest,
        minLimit,
        maxLimit: minLimit + span,
        initialLimit: Math.max(1, minLimit + initialOffset)
      }))
    type Op =
      | { readonly op: "acquire" }
      | { readonly op: "release"; readonly dropped: boolean; readonly rtt: number }
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.constant<Op>({ op: "acquire" }) },
      {
        weight: 2,
        arbitrary: fc.record({
          op: fc.constant("release" as const),
          dropped: fc.boolean(),
          rtt: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 5000, noNaN: true }), fc.constant(Number.NaN))
        })
      }
    )
    fc.assert(
      fc.property(config, fc.array(op, { maxLength: 300 }), (cfg, ops) => {
        const guard = new Guard(cfg)
        const initial = guard.limit
        expect(initial).toBe(Math.min(cfg.maxLimit, Math.max(cfg.minLimit, cfg.initialLimit)))
        for (const o of ops) {
          const inflightBefore = guard.inflight
          const limitBefore = guard.limit
          if (o.op === "acquire") {
            const could = guard.canAcquire()
            const took = guard.tryAcquire()
            expect(took).toBe(could)
            expect(took).toBe(inflightBefore < limitBefore)
            expect(guard.inflight).toBe(took ? inflightBefore + 1 : inflightBefore)
            if (took) expect(guard.inflight).toBeLessThanOrEqual(guard.limit)
          } else {
            const released = guard.release(o.dropped, o.rtt)
            expect(released).toBe(inflightBefore > 0)
            expect(guard.inflight).toBe(Math.max(0, inflightBefore - 1))
            if (!released) expect(guard.limit).toBe(limitBefore)
            if (released && cfg.algorithm === "aimd" && !o.dropped) {
              expect(guard.limit).toBeGreaterThanOrEqual(limitBefore)
            }
            if (released && o.dropped && cfg.algorithm !== "fixed") {
              expect(guard.limit).toBeLessThanOrEqual(limitBefore)
            }
          }
          expect(Number.isInteger(guard.limit)).toBe(true)
          expect(guard.limit).toBeGreaterThanOrEqual(cfg.minLimit)
          expect(guard.limit).toBeLessThanOrEqual(cfg.maxLimit)
          if (cfg.algorithm === "fixed") expect(guard.limit).toBe(initial)
          expect(Number.isFinite(guard.shortRttMs) && Number.isFinite(guard.longRttMs)).toBe(true)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("fixed: pins initialLimit clamped to the bounds", () => {
    const guard = new Guard(options({ algorithm: "fixed", minLimit: 4, maxLimit: 8, initialLimit: 20 }))
    expect(guard.limit).toBe(8)
    expect(fill(guard, 100)).toBe(8)
    expect(guard.tryAcquire()).toBe(false)
    guard.release(true, 10)
    expect(guard.limit).toBe(8)
  })

  it("aimd: +1 per healthy release near the limit, floor(limit x ratio) on a drop", () => {
    const guard = new Guard(options({ algorithm: "aimd", minLimit: 2, maxLimit: 12, initialLimit: 10 }))
    expect(fill(guard, 10)).toBe(10)
    guard.release(false, 5)
    expect(guard.limit).toBe(11)
    guard.release(false, 5)
    expect(guard.limit).toBe(12)
    guard.release(false, 5)
    expect(guard.limit).toBe(12) // capped at maxLimit
    guard.release(true, 5)
    expect(guard.limit).toBe(10) // floor(12 * 0.9)
    for (let i = 0; i < 50; i++) {
      guard.tryAcquire()
      guard.release(true, 5)
    }
    expect(guard.limit).toBe(2) // floored at minLimit
  })

  it("aimd: a healthy release far below the limit does not grow it", () => {
    const guard = new Guard(options({ algorithm: "aimd", initialLimit: 20 }))
    guard.tryAcquire()
    guard.release(false, 5)
    expect(guard.limit).toBe(20)
  })

  it("gradient2: grows under saturation with steady latency, up to maxLimit", () => {
    const guard = new Guard(options({ algorithm: "gradient2", initialLimit: 4, maxLimit: 40 }))
    const seen: Array<number> = []
    for (let round = 0; round < 200; round++) {
      const held = fill(guard, guard.limit)
      for (let i = 0; i < held; i++) guard.release(false, 20)
      seen.push(guard.limit)
    }
    expect(seen[0]).toBeGreaterThan(4)
    expect(guard.limit).toBe(40)
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!)
  })

  it("gradient2: contracts when latency climbs well past the long-term average", () => {
    const guard = new Guard(options({ algorithm: "gradient2", initialLimit: 40, maxLimit: 50, rttWindow: 50 }))
    for (let round = 0; round < 40; round++) {
      const held = fill(guard, guard.limit)
      for (let i = 0; i < held; i++) guard.release(false, 10)
    }
    const before = guard.limit
    expect(before).toBe(50)
    let slow = 0
    while (slow < 50) {
      const held = fill(guard, Math.min(guard.limit, 50 - slow))
      for (let i = 0; i < held; i++) guard.release(false, 400)
      slow += held
    }
    expect(guard.shortRttMs).toBe(400) // the short window is all slow samples now
    expect(guard.longRttMs).toBeLessThan(200) // the long average has barely moved
    expect(guard.limit).toBeLessThan(before)
  })

  it("gradient2: drops back off multiplicatively to minLimit and record no RTT", () => {
    const guard = new Guard(options({ algorithm: "gradient2", minLimit: 3, initialLimit: 30 }))
    fill(guard, 30)
    for (let i = 0; i < 30; i++) guard.release(true, 99)
    expect(guard.limit).toBe(3)
    expect(guard.lastRttMs).toBe(0)
    expect(guard.shortRttMs).toBe(0)
  })

  it("ignores a release with no slot held", () => {
    const guard = new Guard(options({ algorithm: "aimd" }))
    expect(guard.release(true, 10)).toBe(false)
    expect(guard.limit).toBe(10)
    expect(guard.inflight).toBe(0)
  })
})
