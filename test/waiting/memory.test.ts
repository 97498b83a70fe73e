/**
 * Waiting calls on the Memory door under `TestClock`: waiters on one key are served in arrival order and
 * only the first in line retries, when a slot is released (counted on the store by a spy around the real
 * Memory store, since only the store sees every try); a deadline ends a wait with `RateLimited` carrying
 * the last denial; an interrupted waiter frees its place; the rate and cost axes wait exactly
 * `retryAfterMs`; a fault ends a wait at once; a bad `wait` changes nothing; the 50-job pool.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, Ref, TestClock } from "effect"
import { InvalidArgument } from "../../src/Errors.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { Policy } from "../../src/Policy.js"
import { admitted, limit, make, RateLimiter, spend } from "../../src/services/RateLimiter.js"
import { admitterPolicy, counting, lineChecks, pool50, rateLimitedOf, settle, type Tries } from "./support.js"

const policies: ReadonlyArray<Policy> = [
  admitterPolicy("one", 1),
  admitterPolicy("five", 5),
  {
    kind: "limiter",
    name: "api",
    prefix: "api",
    maxKeys: 100,
    strategy: { kind: "gcra", limit: 1, periodMs: 1000, burst: 1 } // one per second
  },
  { kind: "meter", name: "llm", prefix: "llm", maxKeys: 100, budget: 10, windowMs: 1000, shared: false }
]

/**
 * Runs `body` against the Memory door (every acquire counted), forked, moving the `TestClock` until it
 * ends; answers its result and the store's count of tries.
 */
const run = <A, E>(body: Effect.Effect<A, E, RateLimiter>) =>
  Effect.gen(function*() {
    const tries = yield* Ref.make<Tries>({ acquires: 0, denied: 0 })
    const store = yield* MemoryBackend.makeStore({ policies, leaseTtlMs: 2000 })
    const limiter = yield* make(counting(store, tries))
    const fiber = yield* Effect.fork(Effect.provideService(body, RateLimiter, limiter))
    yield* settle
    for (let step = 0; step < 2000 && fiber.unsafePoll() === null; step++) {
      yield* TestClock.adjust("10 millis")
      yield* settle
    }
    return { result: yield* Fiber.join(fiber), tries: yield* Ref.get(tries) }
  })

const checks = lineChecks("one")

describe("waiting on the Memory door (TestClock)", () => {
  it.scoped("waiters on one key are admitted in arrival order; each tries in vain at most once", () =>
    Effect.gen(function*() {
      const { tries } = yield* run(checks.fifo("k"))
      // The holder's acquire, then per waiter one denial (its first try, made when its turn came while the
      // slot was still held) and one held acquire: no waiter tried before its turn, no head retried before a
      // slot was released.
      expect(tries).toEqual({ acquires: 9, denied: 4 })
    }))

  it.scoped("a wait ends at its deadline with RateLimited carrying the last denial and its axis", () =>
    Effect.gen(function*() {
      const { tries } = yield* run(checks.deadline("k"))
      // The waiter's first try and its last, at the deadline (no backoff retry on the Memory door).
      expect(tries).toEqual({ acquires: 3, denied: 2 })
    }))

  it.scoped("a slot released under one key wakes a waiter on another key of the policy (one ceiling)", () =>
    Effect.gen(function*() {
      const { result, tries } = yield* run(Effect.gen(function*() {
        const holder = yield* Effect.fork(Effect.sleep("100 millis").pipe(admitted("one", "a")))
        yield* settle
        yield* Effect.void.pipe(admitted("one", "b", { wait: "10 seconds" }))
        yield* Fiber.join(holder)
        return yield* TestClock.currentTimeMillis
      }))
      expect(result).toBe(100) // at the release, not at a fallback delay
      expect(tries).toEqual({ acquires: 3, denied: 1 })
    }))

  it.scoped("an interrupted waiter frees its place in line", () => Effect.asVoid(run(checks.interruption("k"))))

  it.scoped("a waiting check sleeps the denial's retryAfterMs, and serves waiters in order", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const { result } = yield* run(Effect.gen(function*() {
        yield* limit("api", "u") // the one token of this second
        const waiters = yield* Effect.forEach(["a", "b", "c"], (name) =>
          Effect.tap(
            Effect.fork(
              Effect.zipRight(
                limit("api", "u", { wait: "5 seconds" }),
                Effect.flatMap(TestClock.currentTimeMillis, (now) => Ref.update(order, (o) => [...o, `${name}@${now}`]))
              )
            ),
            () => settle
          ))
        return yield* Effect.forEach(waiters, Fiber.join)
      }))
      expect(result).toHaveLength(3)
      // One per second, to the millisecond, first come first served.
      expect(yield* Ref.get(order)).toEqual(["a@1000", "b@2000", "c@3000"])
    }))

  it.scoped("a check whose retryAfterMs is past the deadline fails at once", () =>
    Effect.gen(function*() {
      const { result } = yield* run(Effect.gen(function*() {
        yield* limit("api", "late")
        const denied = rateLimitedOf(yield* Effect.either(limit("api", "late", { wait: "300 millis" })))
        return { denied, at: yield* TestClock.currentTimeMillis }
      }))
      expect(result.denied.decision.retryAfterMs).toBeGreaterThan(300)
      expect(result.at).toBe(0)
    }))

  it.scoped("a waiting spend waits for the next window of its budget", () =>
    Effect.gen(function*() {
      const { result } = yield* run(Effect.gen(function*() {
        yield* spend("llm", "team", 10)
        const decision = yield* spend("llm", "team", { tokens: 4, wait: "2 seconds" })
        return { remaining: decision.remaining, at: yield* TestClock.currentTimeMillis }
      }))
      expect(result).toEqual({ remaining: 6, at: 1000 })
    }))

  it.scoped("a fault ends a wait at once, and a bad wait is refused after the policy and key, changing nothing", () =>
    Effect.gen(function*() {
      const { result, tries } = yield* run(Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const unknown = yield* Effect.flip(limiter.checkWithin("nope", "k", "1 second"))
        const badCost = yield* Effect.flip(limiter.checkWithin("api", "k", "1 second", 0))
        const badWait = yield* Effect.flip(limiter.checkWithin("api", "k", -5))
        const badWaitText = yield* Effect.flip(
          limiter.admit("one", "k", { wait: "soon" as Duration.DurationInput }).pipe(Effect.scoped)
        )
        const unknownFirst = yield* Effect.flip(limiter.debitWithin("nope", "k", Number.NaN))
        const still = yield* limiter.check("api", "k")
        return { unknown, badCost, badWait, badWaitText, unknownFirst, still }
      }))
      expect(result.unknown._tag).toBe("PolicyNotFound")
      expect(result.badCost).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
      expect(result.badWait).toBeInstanceOf(InvalidArgument)
      expect(result.badWait).toMatchObject({ argument: "wait" })
      expect(result.badWaitText).toMatchObject({ _tag: "InvalidArgument", argument: "wait" })
      expect(result.unknownFirst._tag).toBe("PolicyNotFound")
      expect(result.still.allowed).toBe(true) // nothing was consumed by the refused calls
      expect(tries.acquires).toBe(0)
    }))

  it.scoped("50 jobs through a ceiling of 5 with a waiting admit: all done, at most 5 in flight, no polls", () =>
    Effect.gen(function*() {
      const { result, tries } = yield* run(Effect.flatten(pool50("five", "pool", Effect.sleep("20 millis"))))
      expect(result).toEqual({ done: 50, peak: 5 })
      // Counted at the store: 50 held acquires, and one denial for each of the 45 jobs that had to wait (its
      // first try): no denied acquire after the first denial of any wait.
      expect(tries).toEqual({ acquires: 95, denied: 45 })
    }))
})
