/**
 * What the waiting tests share: policies, the acquire counter (a spy around a real store: only the
 * store sees every try the waiting line makes), the checks every door must pass, and the 50-job pool.
 */
import { expect } from "@effect/vitest"
import { type Duration, Effect, Either, Fiber, Option, Ref } from "effect"
import type { Admission } from "../../src/Decision.js"
import { RateLimited } from "../../src/Errors.js"
import { admitted, RateLimiter } from "../../src/services/RateLimiter.js"
import { mapLocal, type RateLimiterStore } from "../../src/services/RateLimiterStore.js"

/** A fixed concurrency ceiling of `slots` (shared with the HTTP tests). */
export { slotsPolicy as admitterPolicy } from "../http/support.js"

/** Acquires seen by the store, and how many of them were denied. */
export interface Tries {
  readonly acquires: number
  readonly denied: number
}

/** `store` with every acquire counted in `tries` (local and remote stores alike). */
export const counting = (store: RateLimiterStore, tries: Ref.Ref<Tries>): RateLimiterStore => {
  const count = <E, R>(acquire: Effect.Effect<Admission, E, R>) =>
    Effect.tap(
      acquire,
      (admission) =>
        Ref.update(tries, (t) => ({ acquires: t.acquires + 1, denied: t.denied + (admission.held ? 0 : 1) }))
    )
  if (store._tag === "Remote") {
    return { ...store, acquire: (policy, key, options) => count(store.acquire(policy, key, options)) }
  }
  return mapLocal(store, {
    admitter: (_, bound) => ({ acquire: (key, options) => count(bound.acquire(key, options)) })
  })
}

/** The failure of an exit that failed with `RateLimited`, or a failed expectation. */
export const rateLimitedOf = <A, E>(result: Either.Either<A, E>): RateLimited => {
  const error = Option.getOrUndefined(Either.getLeft(result))
  expect(error).toBeInstanceOf(RateLimited)
  return error as RateLimited
}

/** What the 50-job pool saw. */
export interface PoolRun {
  readonly done: number
  readonly peak: number
}

/**
 * 50 jobs at once, each admitted into `policy` (a fixed ceiling) with a waiting admit, holding its slot
 * for `hold` while it runs; counts the jobs done and the most in flight at once.
 */
export const pool50 = (policy: string, key: string, hold: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make({ inFlight: 0, done: 0, peak: 0 })
    const job = Ref.update(seen, (s) => ({ ...s, inFlight: s.inFlight + 1, peak: Math.max(s.peak, s.inFlight + 1) }))
      .pipe(
        Effect.zipRight(hold),
        Effect.ensuring(Ref.update(seen, (s) => ({ ...s, inFlight: s.inFlight - 1, done: s.done + 1 }))),
        admitted(policy, key, { wait: "1 minute" })
      )
    const jobs = yield* Effect.forEach(Array.from({ length: 50 }), () => Effect.fork(job))
    return Effect.gen(function*() {
      for (const fiber of jobs) yield* Fiber.join(fiber)
      const { done, peak } = yield* Ref.get(seen)
      return { done, peak } satisfies PoolRun
    })
  })

export { RateLimiter }

/** Lets forked fibers run up to their next suspension. */
export const settle = Effect.repeatN(Effect.yieldNow(), 20)

/**
 * The line behaviour every door shows on the one-slot admitter `policy` (holds are `Effect.sleep`s: under
 * `TestClock` the driver moves the clock).
 */
export const lineChecks = (policy: string) => {
  /** Forks waiters `ids` on `key` one after the other (each in line before the next), recording entry order. */
  const forkWaiters = (
    key: string,
    ids: ReadonlyArray<number>,
    order: Ref.Ref<ReadonlyArray<number>>,
    wait: Duration.DurationInput = "1 minute"
  ) =>
    Effect.forEach(ids, (id) =>
      Effect.tap(
        Effect.fork(
          Ref.update(order, (o) => [...o, id]).pipe(
            Effect.zipRight(Effect.sleep("10 millis")),
            admitted(policy, key, { wait })
          )
        ),
        () => settle
      ))

  /** A holder of the slot until `release` completes. */
  const holder = (key: string) =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const scope = yield* Effect.scope
      const admission = yield* limiter.admit(policy, key)
      expect(admission.held).toBe(true)
      return scope
    })

  return {
    fifo: (key: string) =>
      Effect.gen(function*() {
        const order = yield* Ref.make<ReadonlyArray<number>>([])
        const first = yield* Effect.fork(Effect.scoped(Effect.zipRight(holder(key), Effect.sleep("50 millis"))))
        yield* settle
        const waiters = yield* forkWaiters(key, [1, 2, 3, 4], order)
        yield* Fiber.join(first)
        for (const waiter of waiters) yield* Fiber.join(waiter)
        expect(yield* Ref.get(order)).toEqual([1, 2, 3, 4])
      }),
    deadline: (key: string) =>
      Effect.scoped(Effect.gen(function*() {
        yield* holder(key)
        const result = yield* Effect.either(Effect.void.pipe(admitted(policy, key, { wait: "200 millis" })))
        const denied = rateLimitedOf(result)
        expect(denied.bindingAxis).toBe("concurrency")
        expect(denied.decision.allowed).toBe(false)
      })),
    interruption: (key: string) =>
      Effect.gen(function*() {
        const order = yield* Ref.make<ReadonlyArray<number>>([])
        const release = yield* Effect.fork(Effect.scoped(Effect.zipRight(holder(key), Effect.never)))
        yield* settle
        const [head, middle, last] = yield* forkWaiters(key, [1, 2, 3], order)
        // The middle waiter leaves its place, then the head leaves the line: the last one is served next.
        yield* Fiber.interrupt(middle!)
        yield* Fiber.interrupt(head!)
        yield* Fiber.interrupt(release)
        yield* Fiber.join(last!)
        expect(yield* Ref.get(order)).toEqual([3])
        // The line is empty again: a new waiter is served at once.
        yield* Effect.void.pipe(admitted(policy, key, { wait: "1 minute" }))
      })
  }
}
