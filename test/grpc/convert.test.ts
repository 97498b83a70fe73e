import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { amountFromWire, fromInt64, hintFromWire, toInt64 } from "../../src/grpc/convert.js"

describe("int64 conversions", () => {
  it("domain numbers become int64 explicitly: truncated, clamped, NaN as 0", () => {
    expect(toInt64(1_800_000_000_000)).toBe(1_800_000_000_000n)
    expect(toInt64(2.9)).toBe(2n)
    expect(toInt64(Number.NaN)).toBe(0n)
    expect(toInt64(Number.POSITIVE_INFINITY)).toBe(2n ** 63n - 1n)
    expect(toInt64(-1e30)).toBe(-(2n ** 63n))
    expect(fromInt64(1_800_000_000_000n)).toBe(1_800_000_000_000)
  })

  it("a wire amount of 0 means 1; others pass through for validation", () => {
    expect(amountFromWire(0n)).toBe(1)
    expect(amountFromWire(7n)).toBe(7)
    expect(amountFromWire(-3n)).toBe(-3)
    expect(amountFromWire(2n ** 62n)).toBeGreaterThan(Number.MAX_SAFE_INTEGER)
  })

  it.effect("hints must be non-negative and exact", () =>
    Effect.gen(function*() {
      expect(yield* hintFromWire(250n, "hold")).toBe(250)
      expect((yield* Effect.flip(hintFromWire(-1n, "hold"))).message).toBe("invalid hold: must not be negative, got -1")
      expect((yield* Effect.flip(hintFromWire(2n ** 60n, "value")))._tag).toBe("InvalidArgument")
    }))
})
