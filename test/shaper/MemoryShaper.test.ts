/**
 * The in-process shaper under `TestClock`: calls leave exactly `1000 / ratePerSec` ms apart, in the
 * order they reserved; a call whose queue is longer than `maxQueueMs` fails with `RateLimited` and never
 * runs; a call interrupted while it waits gives its instant back when it is the last one reserved; bad
 * input changes nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { InvalidArgument } from "../../src/Errors.js"
import * as MemoryShaper from "../../src/layers/MemoryShaper.js"
import { Shaper, type ShaperPolicy } from "../../src/services/Shaper.js"
import { shapingSuite } from "./suite.js"

const partner: ShaperPolicy = { name: "partner", prefix: "partner", ratePerSec: 10, maxQueueMs: 250, maxKeys: 100 }
const slow: ShaperPolicy = { name: "slow", prefix: "slow", ratePerSec: 3, maxQueueMs: 5000, maxKeys: 100 }

shapingSuite("memory", MemoryShaper.layer({ shapers: [partner, slow] }), "partner", "slow")

describe("MemoryShaper", () => {
  it.effect("a bad shaper list is InvalidArgument", () =>
    Effect.gen(function*() {
      const twice = yield* Effect.flip(MemoryShaper.make({ shapers: [partner, partner] }))
      expect(twice).toEqual(new InvalidArgument({ argument: "shapers", reason: "two shapers have the same name" }))
      const bad = yield* Effect.flip(MemoryShaper.make({ shapers: [{ ...partner, ratePerSec: 0 }] }))
      expect(bad._tag).toBe("InvalidArgument")
      const negative = yield* Effect.flip(MemoryShaper.make({ shapers: [{ ...partner, maxQueueMs: -1 }] }))
      expect(negative._tag).toBe("InvalidArgument")
    }))

  it.effect("a key whose queue emptied is forgotten past maxKeys, and still answers as a fresh key", () =>
    Effect.gen(function*() {
      const shaper = yield* Shaper
      for (let i = 0; i < 300; i++) expect((yield* shaper.reserve("partner", `k${i}`)).delayMs).toBe(0)
      expect((yield* shaper.reserve("partner", "k0")).delayMs).toBe(100)
      yield* TestClock.adjust("1 second")
      for (let i = 300; i < 600; i++) expect((yield* shaper.reserve("partner", `k${i}`)).delayMs).toBe(0)
      expect((yield* shaper.reserve("partner", "k1")).delayMs).toBe(0)
    }).pipe(Effect.provide(MemoryShaper.layer({ shapers: [partner] }))))
})
