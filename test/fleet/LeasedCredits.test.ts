/**
 * Leased credits: local spends without a round trip, one refresh at a time however many fibers share
 * the credits, no credit spent twice, refusals remembered until their retry time, window coupling (credits
 * die at the boundary and never carry into a new window's grant), and bounded refreshing when grants
 * arrive already expired.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import type { Decision } from "../../src/Decision.js"
import * as LeasedCredits from "../../src/fleet/LeasedCredits.js"

/** A budget of `limit` per window of `windowMs`, counting the reservations made and how many overlap. */
const budget = (limit: number, windowMs: number, options: { readonly delayMs?: number } = {}) => {
  const stats = { calls: 0, inFlight: 0, maxInFlight: 0, granted: 0 }
  let window = -1
  let left = limit
  const reserve = (wants: number) =>
    Effect.gen(function*() {
      stats.calls++
      stats.inFlight++
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
      if (options.delayMs !== undefined) yield* Effect.sleep(options.delayMs)
      else yield* Effect.yieldNow()
      const now = yield* TestClock.currentTimeMillis
      const current = Math.floor(now / windowMs)
      if (current !== window) {
        window = current
        left = limit
      }
      const granted = Math.min(wants, left)
      left -= granted
      stats.granted += granted
      stats.inFlight--
      const expiresAt = (current + 1) * windowMs
      return { granted, expiresAt, retryAfterMs: granted === 0 ? expiresAt - now : 0, limit }
    })
  return { reserve, stats }
}

const allowed = (decisions: ReadonlyArray<Decision>) => decisions.filter((d) => d.allowed).length

describe("LeasedCredits", () => {
  it.effect("spends locally and reserves only when the credits run short", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(10)
      const { reserve, stats } = budget(100, 1000)
      const credits = yield* LeasedCredits.make({ limit: 100, batch: 10, windowCoupled: true, reserve, name: "t" })
      const first = yield* credits.check()
      expect(first).toMatchObject({ allowed: true, limit: 100, remaining: 9, resetAt: 1000, retryAfterMs: 0 })
      for (let i = 0; i < 9; i++) yield* credits.check()
      expect(stats.calls).toBe(1)
      expect(credits.credits).toBe(0)
      yield* credits.check(3)
      expect(stats.calls).toBe(2)
      expect(credits.credits).toBe(7)
      // A check costing more than a batch asks for what it needs.
      yield* credits.check(20)
      expect(stats.calls).toBe(3)
      expect(credits.credits).toBe(0)
    }))

  it.effect("many fibers sharing the credits: one refresh at a time, nothing spent twice", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const { reserve, stats } = budget(1000, 10_000, { delayMs: 5 })
      const credits = yield* LeasedCredits.make({ limit: 1000, batch: 7, windowCoupled: true, reserve, name: "t" })
      const fiber = yield* Effect.fork(
        Effect.all(Array.from({ length: 300 }, () => credits.check()), { concurrency: "unbounded" })
      )
      for (let i = 0; i < 100 && fiber.unsafePoll() === null; i++) yield* TestClock.adjust(5)
      const decisions = yield* Fiber.join(fiber)
      expect(allowed(decisions)).toBe(300)
      expect(stats.maxInFlight).toBe(1)
      // Every unit admitted was granted once, and fibers queued behind a refresh used its grant first.
      expect(stats.granted).toBe(300 + credits.credits)
      expect(stats.calls).toBe(Math.ceil(300 / 7))
    }))

  it.effect("an exhausted budget is a denial from the store, remembered until its retry time", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const { reserve, stats } = budget(5, 1000)
      const credits = yield* LeasedCredits.make({ limit: 5, batch: 3, windowCoupled: true, reserve, name: "t" })
      const decisions: Array<Decision> = []
      for (let i = 0; i < 8; i++) decisions.push(yield* credits.check())
      expect(allowed(decisions)).toBe(5)
      expect(decisions[5]).toMatchObject({ allowed: false, limit: 5, remaining: 0, resetAt: 1000, retryAfterMs: 900 })
      // Three grants (3, 2, then the refusal); the later denials were answered locally.
      expect(stats.calls).toBe(3)
      yield* TestClock.adjust(400)
      expect(yield* credits.check()).toMatchObject({ allowed: false, retryAfterMs: 500 })
      expect(stats.calls).toBe(3)
      yield* TestClock.adjust(500)
      expect((yield* credits.check()).allowed).toBe(true)
      expect(stats.calls).toBe(4)
    }))

  it.effect("window-coupled credits die at the boundary; uncoupled ones carry over", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(900)
      const coupled = budget(10, 1000)
      const a = yield* LeasedCredits.make({
        limit: 10,
        batch: 4,
        windowCoupled: true,
        reserve: coupled.reserve,
        name: "a"
      })
      yield* a.check()
      const carried = budget(10, 1000)
      const b = yield* LeasedCredits.make({
        limit: 10,
        batch: 4,
        windowCoupled: false,
        reserve: carried.reserve,
        name: "b"
      })
      yield* b.check()
      yield* TestClock.setTime(1000)
      expect(yield* a.check()).toMatchObject({ allowed: true, remaining: 3, resetAt: 2000 })
      expect(coupled.stats.calls).toBe(2)
      expect(yield* b.check()).toMatchObject({ allowed: true, remaining: 2, resetAt: 1000 })
      expect(carried.stats.calls).toBe(1)
    }))

  it.effect("a grant for a newer window than the credits held starts from zero when coupled", () =>
    Effect.gen(function*() {
      // The store's window has moved on while this process's clock still reads the old window.
      yield* TestClock.setTime(500)
      let next = { granted: 2, expiresAt: 1000 }
      const credits = yield* LeasedCredits.make({
        limit: 10,
        batch: 2,
        windowCoupled: true,
        name: "t",
        reserve: () => Effect.succeed({ ...next, retryAfterMs: 0 })
      })
      yield* credits.check() // 1 credit of window 1000 left
      next = { granted: 2, expiresAt: 2000 }
      yield* credits.check(2) // needs 2: the grant for window 2000 replaces the leftover
      expect(credits.credits).toBe(0)
      expect(credits.expiresAt).toBe(2000)
    }))

  it.effect("refuses a bad cost and gives up on grants that are dead on arrival", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(5000)
      let calls = 0
      const credits = yield* LeasedCredits.make({
        limit: 10,
        batch: 2,
        windowCoupled: true,
        name: "policy \"p\"",
        reserve: () => Effect.sync(() => ({ granted: 2, expiresAt: 4000 + calls++, retryAfterMs: 0 }))
      })
      for (const cost of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect((yield* Effect.flip(credits.check(cost)))._tag).toBe("InvalidArgument")
      }
      expect(calls).toBe(0)
      const error = yield* Effect.flip(credits.check())
      expect(error._tag).toBe("ServiceUnavailable")
      expect(error.message).toContain("clock")
      expect(calls).toBe(4)
    }))
})
