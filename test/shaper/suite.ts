/**
 * The shaper suite, written once and run on every shaper store: reservations under `TestClock` (the
 * Redis store reads it too, with `clock: "effect"`). `shaper` names a shaper of 10 per second waiting
 * at most 250 ms; `slow` one of 3 per second (a fractional spacing) waiting at most 5 s. Keys are fresh
 * per test, so a shared store is fine.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, type Layer, TestClock, TestServices } from "effect"
import { randomUUID } from "node:crypto"
import { InvalidArgument, PolicyNotFound, RateLimited } from "../../src/Errors.js"
import { shaped, Shaper } from "../../src/services/Shaper.js"

/** Where each test sets the `TestClock` first (the Redis store's Effect clock must read a real instant). */
const START = 1_700_000_000_000

/** Runs the suite against `layer`, a store serving `shaper` (10/s, 250 ms) and `slow` (3/s, 5 s). */
export const shapingSuite = <E>(name: string, layer: Layer.Layer<Shaper, E>, shaper: string, slow: string) => {
  const fresh = (label: string) => `${label}:${randomUUID().slice(0, 8)}`
  const delays = (key: string, n: number, on = shaper) =>
    Effect.flatMap(Shaper, (s) => Effect.forEach(Array.from({ length: n }), () => s.reserve(on, key)))

  describe(`shaping: ${name}`, () => {
    it.effect("calls at one instant leave exactly 1000 / ratePerSec ms apart, never earlier", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const key = fresh("spacing")
        const accepted = yield* delays(key, 3)
        expect(accepted.map((r) => [r.accepted, r.delayMs])).toEqual([[true, 0], [true, 100], [true, 200]])
        expect(accepted.map((r) => r.decision.remaining)).toEqual([2, 1, 0])
        // A fractional spacing (333.33 ms): each call goes at its exact instant rounded up, never before.
        const thirds = yield* delays(fresh("thirds"), 7, slow)
        thirds.forEach((r, i) => {
          expect(r.accepted).toBe(true)
          expect(r.delayMs).toBeGreaterThanOrEqual((i * 1000) / 3)
          expect(r.delayMs).toBeLessThan((i * 1000) / 3 + 1)
        })
        // Other keys have queues of their own.
        expect((yield* delays(fresh("other"), 1)).map((r) => r.delayMs)).toEqual([0])
      }).pipe(Effect.provide(layer)))

    it.effect("a call whose queue is longer than maxQueueMs is refused, with the wait until it is not", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const key = fresh("bound")
        yield* delays(key, 3) // departures reserved up to 300 ms
        const [refused] = yield* delays(key, 1)
        expect(refused!.accepted).toBe(false)
        expect(refused!.delayMs).toBe(0)
        // The queue holds 300 ms; 250 may wait: 50 ms more. Refusing wrote nothing.
        expect(refused!.decision).toMatchObject({ allowed: false, limit: 3, remaining: 0, retryAfterMs: 50 })
        yield* TestClock.adjust(50)
        const [now] = yield* delays(key, 1)
        expect([now!.accepted, now!.delayMs]).toEqual([true, 250])
        // Once the queue has drained, a call goes at once.
        yield* TestClock.adjust(1000)
        expect((yield* delays(key, 1)).map((r) => r.delayMs)).toEqual([0])
      }).pipe(Effect.provide(layer)))

    it.effect("a cost of n holds the rate n times as long", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const s = yield* Shaper
        const key = fresh("cost")
        expect((yield* s.reserve(shaper, key, 2)).delayMs).toBe(0)
        expect((yield* s.reserve(shaper, key, 1)).delayMs).toBe(200)
        expect((yield* s.reserve(shaper, key, 1)).accepted).toBe(false)
      }).pipe(Effect.provide(layer)))

    it.effect("giving back the last reservation frees its instant; an earlier one's stays used", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const s = yield* Shaper
        const key = fresh("give-back")
        const [, second, third] = yield* delays(key, 3)
        expect(yield* s.giveBack(third!)).toBe(true)
        const again = yield* s.reserve(shaper, key)
        expect([again.accepted, again.delayMs]).toEqual([true, 200])
        // `second` is no longer the last: giving it back changes nothing.
        expect(yield* s.giveBack(second!)).toBe(false)
        expect((yield* s.reserve(shaper, key)).accepted).toBe(false)
        // A refused reservation holds nothing to give back.
        const refused = yield* s.reserve(shaper, key)
        expect(yield* s.giveBack(refused)).toBe(false)
      }).pipe(Effect.provide(layer)))

    it.effect("bad input fails with a typed error and changes nothing", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const s = yield* Shaper
        const key = fresh("bad")
        expect(yield* Effect.flip(s.reserve("nope", key))).toBeInstanceOf(PolicyNotFound)
        for (const cost of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
          expect(yield* Effect.flip(s.reserve(shaper, key, cost))).toBeInstanceOf(InvalidArgument)
        }
        expect(yield* Effect.flip(s.reserve(shaper, ""))).toBeInstanceOf(InvalidArgument)
        expect((yield* delays(key, 1)).map((r) => r.delayMs)).toEqual([0])
      }).pipe(Effect.provide(layer)))

    it.effect("shaped runs each effect at its instant, in the order reserved, and refuses past the bound", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const key = fresh("shaped")
        const ran: Array<readonly [string, number]> = []
        const call = (label: string) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => ran.push([label, now - START]))).pipe(
            shaped(shaper, key)
          )
        yield* call("a")
        const b = yield* Effect.fork(call("b"))
        yield* sleepsPending(1)
        const c = yield* Effect.fork(call("c"))
        yield* sleepsPending(2)
        const refused = yield* Effect.flip(call("d"))
        expect(refused).toBeInstanceOf(RateLimited)
        expect(refused._tag === "RateLimited" && refused.decision.retryAfterMs).toBe(50)
        yield* TestClock.adjust(99)
        expect(ran).toEqual([["a", 0]])
        yield* TestClock.adjust(101)
        yield* Fiber.join(b)
        yield* Fiber.join(c)
        expect(ran).toEqual([["a", 0], ["b", 100], ["c", 200]])
      }).pipe(Effect.provide(layer)))

    it.effect("a call interrupted while it waits never runs, and gives its instant back when it was the last", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(START)
        const s = yield* Shaper
        const key = fresh("interrupted")
        const ran: Array<string> = []
        const call = (label: string) => Effect.sync(() => ran.push(label)).pipe(shaped(shaper, key))
        yield* call("a")
        const b = yield* Effect.fork(call("b"))
        yield* sleepsPending(1)
        const c = yield* Effect.fork(call("c"))
        yield* sleepsPending(2)
        // b is not the last reserved: its instant (100) stays unused; c keeps 200.
        yield* Fiber.interrupt(b)
        // c is: interrupting it frees 200 for the next call.
        yield* Fiber.interrupt(c)
        const next = yield* s.reserve(shaper, key)
        expect([next.accepted, next.delayMs]).toEqual([true, 200])
        yield* TestClock.adjust(1000)
        expect(ran).toEqual(["a"])
      }).pipe(Effect.provide(layer)))
  })
}

/** Waits (real time, 1 ms at a time) until `n` sleeps are scheduled on the `TestClock`. */
const sleepsPending = (n: number) =>
  Effect.repeat(
    Effect.zipRight(TestServices.provideLive(Effect.sleep("1 millis")), TestClock.sleeps()),
    { until: (sleeps) => sleeps.length >= n }
  )
