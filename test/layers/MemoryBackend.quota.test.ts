/**
 * Quotas on the Memory door under `TestClock`: every calendar edge of test/support/quotaCalendar.ts
 * (month ends, leap days, ±14 h offsets, weeks from Sunday or Saturday, the year's end, a fixed anchor)
 * through the one front, and a rolling quota that counts a trailing window.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { calendarEdges, edgePolicy, replayEdge } from "../support/quotaCalendar.js"

describe("MemoryBackend quotas with TestClock", () => {
  it.effect.each(calendarEdges)("$name", (edge) =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      yield* replayEdge(limiter, "quota", "k", edge)
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: [edgePolicy("quota", "q", edge)] }))))

  it.effect("a rolling quota counts the trailing period (a sliding window), reset or not by the calendar", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      yield* TestClock.setTime(Date.UTC(2024, 11, 31, 23, 30))
      for (let i = 0; i < 3; i++) expect((yield* limiter.check("rolling", "k")).allowed).toBe(true)
      expect((yield* limiter.check("rolling", "k")).allowed).toBe(false)
      // Midnight, the new year: nothing resets, the units are still in the trailing hour.
      yield* TestClock.setTime(Date.UTC(2025, 0, 1, 0, 0))
      expect((yield* limiter.check("rolling", "k")).allowed).toBe(false)
      // A whole period (plus a bucket) later, all of them have left it.
      yield* TestClock.setTime(Date.UTC(2025, 0, 1, 0, 36))
      expect((yield* limiter.peek("rolling", "k")).remaining).toBe(3)
    }).pipe(Effect.provide(MemoryBackend.layer({
      policies: [{
        kind: "limiter",
        name: "rolling",
        prefix: "r",
        maxKeys: 10,
        strategy: { kind: "quota", resetCadence: "rolling", limit: 3, periodMs: 3_600_000, buckets: 10 }
      }]
    }))))
})
