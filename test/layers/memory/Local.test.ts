/**
 * The Memory door's synchronous limiter: it shares key tables with the `RateLimiter` service of the
 * same layer, answers a denial as a `Right(Decision)` and a fault as a `Left` tagged error that changes
 * no state, follows the `Clock` the layer was built under, and runs with no Effect runtime at all. Its
 * key tables keep each key's state in one cell updated in place: expiry and re-creation must read exactly
 * as fresh keys, a table past its cap must keep every key still counting, and peeks and faults must
 * leave the cells alone.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Equal, TestClock } from "effect"
import type { Decision } from "../../../src/Decision.js"
import * as MemoryBackend from "../../../src/layers/MemoryBackend.js"
import type { Policy } from "../../../src/Policy.js"
import { PolicySet } from "../../../src/PolicySet.js"
import { RateLimiter } from "../../../src/services/RateLimiter.js"

const HOUR = 3_600_000
/** 5 per hour, burst 5: one unit comes back every 720 000 ms. */
const EMISSION_MS = HOUR / 5

/** The "api" limiter (GCRA, 5 per hour, burst 5), holding at most `maxKeys` keys. */
const apiLimiter = (maxKeys: number): Policy => ({
  kind: "limiter",
  name: "api",
  prefix: "api",
  maxKeys,
  strategy: { kind: "gcra", limit: 5, periodMs: HOUR, burst: 5 }
})

/** `list` as a validated set, for `makeLocal` (a bad list fails the test here). */
const validated = (list: ReadonlyArray<Policy>): PolicySet => Either.getOrThrow(PolicySet.validate(list))

const policies: ReadonlyArray<Policy> = [
  apiLimiter(100),
  { kind: "meter", name: "tokens", prefix: "tokens", maxKeys: 100, budget: 10, windowMs: HOUR, shared: false },
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
  }
]

const backend = MemoryBackend.layer({ policies })

/** The decision in `result`, failing the test with the fault when there is one. */
const decisionOf = (result: Either.Either<Decision, MemoryBackend.LocalError>): Decision => {
  if (Either.isLeft(result)) throw new Error(`expected a decision, got ${result.left._tag}: ${result.left.message}`)
  return result.right
}

/** The fault in `result`, failing the test when there is a decision instead. */
const faultOf = (result: Either.Either<Decision, MemoryBackend.LocalError>): MemoryBackend.LocalError => {
  if (Either.isRight(result)) throw new Error(`expected a fault, got a decision (allowed ${result.right.allowed})`)
  return result.left
}

describe("MemoryBackend.Local", () => {
  it.effect("local and service checks count against the same limit", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const local = yield* MemoryBackend.Local
      const remaining: Array<number> = []
      // 3 local checks and 2 service checks, interleaved, on a burst of 5.
      remaining.push(decisionOf(local.check("api", "k")).remaining)
      remaining.push((yield* limiter.check("api", "k")).remaining)
      remaining.push(decisionOf(local.check("api", "k")).remaining)
      remaining.push((yield* limiter.check("api", "k")).remaining)
      remaining.push(decisionOf(local.check("api", "k")).remaining)
      expect(remaining).toEqual([4, 3, 2, 1, 0])
      expect(decisionOf(local.check("api", "k")).allowed).toBe(false)
      expect((yield* limiter.check("api", "k")).allowed).toBe(false)
      // The service's peek sees the state the local checks wrote, and the reverse.
      expect((yield* limiter.peek("api", "k")).allowed).toBe(false)
      expect(decisionOf(local.peek("api", "k")).allowed).toBe(false)
      // Another key is untouched.
      expect(decisionOf(local.check("api", "other")).remaining).toBe(4)
    }).pipe(Effect.provide(backend)))

  it.effect("a bound policy check shares the limit; its policy faults come at binding, its argument faults per call", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const local = yield* MemoryBackend.Local
      const bound = local.limiter("api")
      if (Either.isLeft(bound)) throw new Error(`binding "api" failed: ${bound.left.message}`)
      const check = bound.right
      const remaining = [
        decisionOf(check("b")).remaining,
        decisionOf(local.check("api", "b")).remaining,
        (yield* limiter.check("api", "b")).remaining,
        decisionOf(check("b", 2)).remaining
      ]
      expect(remaining).toEqual([4, 3, 2, 0])
      expect(decisionOf(check("b")).allowed).toBe(false)

      // A bad cost or key is the call's Left and changes nothing.
      const before = decisionOf(local.peek("api", "b2"))
      expect(faultOf(check("b2", 0))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
      expect(faultOf(check("b2", 1.5))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
      expect(faultOf(check(""))).toMatchObject({ _tag: "InvalidArgument", argument: "key" })
      expect(faultOf(check("bad\uD800key"))).toMatchObject({ _tag: "InvalidArgument", argument: "key" })
      expect(decisionOf(local.peek("api", "b2"))).toEqual(before)

      // An unknown or non-limiter policy is the binding's Left.
      const missing = local.limiter("nope")
      expect(Either.isLeft(missing) && missing.left._tag).toBe("PolicyNotFound")
      for (const name of ["tokens", "pool"]) {
        const refused = local.limiter(name)
        expect(Either.isLeft(refused) && refused.left).toMatchObject({
          _tag: "OperationNotSupported",
          policy: name,
          operation: "check"
        })
      }
    }).pipe(Effect.provide(backend)))

  it.effect("a denial is a Right(Decision) with allowed false and a retry hint", () =>
    Effect.gen(function*() {
      const local = yield* MemoryBackend.Local
      for (let i = 0; i < 5; i++) expect(decisionOf(local.check("api", "d")).allowed).toBe(true)
      const result = local.check("api", "d")
      expect(Either.isRight(result)).toBe(true)
      const denied = decisionOf(result)
      expect(denied.allowed).toBe(false)
      expect(denied.limit).toBe(5)
      expect(denied.remaining).toBe(0)
      expect(denied.retryAfterMs).toBe(EMISSION_MS)
      // A cost above the burst is a denial too, not a fault.
      expect(decisionOf(local.check("api", "fresh", 6)).allowed).toBe(false)
    }).pipe(Effect.provide(backend)))

  it.effect("each fault is a Left with its tagged error and changes no state", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const local = yield* MemoryBackend.Local
      expect(decisionOf(local.check("api", "f", 2)).remaining).toBe(3)
      const before = yield* limiter.peek("api", "f")

      for (const cost of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        const fault = faultOf(local.check("api", "f", cost))
        expect(fault._tag).toBe("InvalidArgument")
        expect(fault).toMatchObject({ argument: "cost" })
      }
      for (const key of ["", "bad\uD800key", "k".repeat(4097)]) {
        const fault = faultOf(local.check("api", key))
        expect(fault._tag).toBe("InvalidArgument")
        expect(fault).toMatchObject({ argument: "key" })
        expect(faultOf(local.peek("api", key))._tag).toBe("InvalidArgument")
      }
      const missing = faultOf(local.check("nope", "f"))
      expect(missing._tag).toBe("PolicyNotFound")
      expect(missing).toMatchObject({ policy: "nope", configured: ["api", "tokens", "pool"] })
      expect(faultOf(local.peek("nope", "f"))._tag).toBe("PolicyNotFound")
      for (const name of ["tokens", "pool"]) {
        const fault = faultOf(local.check(name, "f"))
        expect(fault._tag).toBe("OperationNotSupported")
        expect(fault).toMatchObject({ policy: name, operation: "check" })
        expect(faultOf(local.peek(name, "f"))).toMatchObject({ _tag: "OperationNotSupported", operation: "peek" })
      }
      // The policy is reported before a bad key, and a bad key before a bad cost (every door's order).
      expect(faultOf(local.check("nope", "", 0))._tag).toBe("PolicyNotFound")
      expect(faultOf(local.check("tokens", "", 0))._tag).toBe("OperationNotSupported")
      expect(faultOf(local.check("api", "", 0))).toMatchObject({ _tag: "InvalidArgument", argument: "key" })
      expect(faultOf(local.check("api", "f", 0))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })

      const after = yield* limiter.peek("api", "f")
      expect(after).toEqual(before)
      expect(after.remaining).toBe(3)
      expect(decisionOf(local.check("api", "f")).remaining).toBe(2)
    }).pipe(Effect.provide(backend)))

  it.effect("a layer built under TestClock gives a Local that follows the TestClock", () =>
    Effect.gen(function*() {
      const local = yield* MemoryBackend.Local
      const first = decisionOf(local.check("api", "t"))
      // At TestClock time 0, the first check's TAT is one emission interval.
      expect(first.resetAt).toBe(EMISSION_MS)
      for (let i = 0; i < 4; i++) decisionOf(local.check("api", "t"))
      expect(decisionOf(local.check("api", "t")).retryAfterMs).toBe(EMISSION_MS)
      yield* TestClock.adjust(EMISSION_MS - 1)
      expect(decisionOf(local.check("api", "t"))).toMatchObject({ allowed: false, retryAfterMs: 1 })
      yield* TestClock.adjust(1)
      expect(decisionOf(local.check("api", "t"))).toMatchObject({ allowed: true, remaining: 0 })
      // The service, reading the same TestClock per call, agrees.
      expect((yield* (yield* RateLimiter).check("api", "t")).allowed).toBe(false)
    }).pipe(Effect.provide(backend)))

  it.effect("the Either yields in Effect.gen: Right as the decision, Left as the failure", () =>
    Effect.gen(function*() {
      const local = yield* MemoryBackend.Local
      const decision = yield* local.check("api", "y")
      expect(decision.allowed).toBe(true)
      expect(decision.remaining).toBe(4)
      const failure = yield* Effect.flip(Effect.gen(function*() {
        return yield* local.check("nope", "y")
      }))
      expect(failure._tag).toBe("PolicyNotFound")
    }).pipe(Effect.provide(backend)))
})

/** The "api" limiter and a fixed window of 2 per minute ("window"), each holding at most 3 keys. */
const smallTables: ReadonlyArray<Policy> = [
  apiLimiter(3),
  {
    kind: "limiter",
    name: "window",
    prefix: "window",
    maxKeys: 3,
    strategy: { kind: "fixedWindow", limit: 2, windowMs: 60_000 }
  }
]

/** The bound check of `name` on `local`, failing the test when binding fails. */
const boundCheck = (local: MemoryBackend.LocalLimiter, name: string): MemoryBackend.LocalCheck => {
  const bound = local.limiter(name)
  if (Either.isLeft(bound)) throw new Error(`binding "${name}" failed: ${bound.left.message}`)
  return bound.right
}

describe("MemoryBackend.Local key cells", () => {
  it("a table full of live keys keeps them all (and says so once); keys that read fresh are dropped", () => {
    let now = 1_000_000
    const reports: Array<MemoryBackend.FullTable> = []
    const local = MemoryBackend.makeLocal({
      policies: validated(smallTables),
      now: () => now,
      onTableFull: (event) => reports.push(event)
    })
    const check = boundCheck(local, "api")
    const remaining = (key: string) => decisionOf(check(key)).remaining
    // a, a, b, c fill the cap of 3; "d" finds every key still counting, so the table grows past it.
    expect([remaining("a"), remaining("a"), remaining("b"), remaining("c"), remaining("d")]).toEqual([4, 3, 4, 4, 4])
    expect(reports).toEqual([{ policy: "api", maxKeys: 3, keys: 3, onFull: "grow" }])
    now += 1
    // Every key kept its count: none was forgotten while it still counted.
    expect([remaining("a"), remaining("b"), remaining("c"), remaining("d")]).toEqual([2, 3, 3, 3])
    for (const key of ["e", "f", "g", "h"]) expect(remaining(key)).toBe(4)
    expect(reports).toHaveLength(1)
    // Once every burst is back, every key reads as a fresh one (the table dropped them as it swept).
    now += 5 * EMISSION_MS
    for (const key of ["a", "b", "c", "d", "e", "f", "g", "h", "i"]) expect(remaining(key)).toBe(4)
    expect(remaining("a")).toBe(3)
  })

  it("an expired key is checked as a fresh one, allowed or denied, and the key counts on afterwards", () => {
    let now = 1_000_000
    const local = MemoryBackend.makeLocal({ policies: validated(smallTables), now: () => now })
    const check = boundCheck(local, "api")
    for (let i = 0; i < 5; i++) decisionOf(check("k"))
    expect(decisionOf(check("k")).allowed).toBe(false)
    // The key expires once its whole burst is back: five emission intervals after the first check.
    now += 5 * EMISSION_MS + 1
    expect(decisionOf(local.peek("api", "k"))).toMatchObject({ allowed: true, remaining: 5 })
    expect(decisionOf(check("k"))).toMatchObject({ allowed: true, remaining: 4, resetAt: now + EMISSION_MS })
    expect(decisionOf(check("k")).remaining).toBe(3)
    // Expired again; a check above the burst is denied as on a fresh key and leaves it fresh.
    now += 5 * EMISSION_MS + 1
    expect(decisionOf(check("k", 6))).toMatchObject({ allowed: false, remaining: 5 })
    expect(decisionOf(check("k")).remaining).toBe(4)
  })

  it("peeks change no state", () => {
    let now = 1_000_000
    const local = MemoryBackend.makeLocal({ policies: validated(smallTables), now: () => now })
    const check = boundCheck(local, "api")
    decisionOf(check("p", 2))
    const first = decisionOf(local.peek("api", "p"))
    for (let i = 0; i < 10; i++) expect(decisionOf(local.peek("api", "p"))).toEqual(first)
    expect(first).toMatchObject({ allowed: true, remaining: 3 })
    // A peek at a key the table does not hold does not create it (nor count against the cap).
    for (const key of ["q1", "q2", "q3", "q4"]) decisionOf(local.peek("api", key))
    expect(decisionOf(check("p")).remaining).toBe(2)
    now += EMISSION_MS
    expect(decisionOf(local.peek("api", "p")).remaining).toBe(3)
    expect(decisionOf(check("p")).remaining).toBe(2)
  })

  it("a fault on a key the table holds changes no state", () => {
    const local = MemoryBackend.makeLocal({ policies: validated(smallTables), now: () => 1_000_000 })
    const check = boundCheck(local, "api")
    expect(decisionOf(check("h", 2)).remaining).toBe(3)
    for (const cost of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(faultOf(check("h", cost))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
      expect(faultOf(local.check("api", "h", cost))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
    }
    expect(decisionOf(check("h")).remaining).toBe(2)
  })

  it.effect("a strategy without its own in-place check (a fixed window) shares, expires and keeps the same way", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const local = yield* MemoryBackend.Local
      const check = boundCheck(local, "window")
      expect(decisionOf(check("w")).remaining).toBe(1)
      expect((yield* limiter.check("window", "w")).remaining).toBe(0)
      expect(decisionOf(check("w"))).toMatchObject({ allowed: false, retryAfterMs: 60_000 })
      expect(decisionOf(local.peek("window", "w")).allowed).toBe(false)
      yield* TestClock.adjust(60_000)
      expect(decisionOf(check("w")).remaining).toBe(1)
      // x, y and z go past the cap of 3 while "w" still counts this window: "w" is kept, at its count.
      for (const key of ["x", "y", "z"]) expect(decisionOf(check(key)).remaining).toBe(1)
      expect(decisionOf(check("w")).remaining).toBe(0)
      expect(decisionOf(check("w"))).toMatchObject({ allowed: false, remaining: 0 })
      expect(decisionOf(check("z")).remaining).toBe(0)
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: smallTables }))))

  it("a check's Right is an Either.right like any other", () => {
    const local = MemoryBackend.makeLocal({ policies: validated(smallTables), now: () => 1_000_000 })
    const result = boundCheck(local, "api")("r")
    const decision = decisionOf(result)
    const built = Either.right(decision)
    expect(Either.isEither(result) && Either.isRight(result)).toBe(true)
    expect(Equal.equals(result, built)).toBe(true)
    expect(Object.getPrototypeOf(result)).toBe(Object.getPrototypeOf(built))
    expect(Object.keys(result)).toEqual(Object.keys(built))
    expect(result.toJSON()).toEqual(built.toJSON())
    expect(String(result)).toBe(String(built))
    expect(Either.match(result, { onLeft: () => -1, onRight: (d) => d.remaining })).toBe(4)
    expect(Effect.runSync(result)).toBe(decision)
    expect(Either.isRight(local.peek("api", "r"))).toBe(true)
  })
})

describe("MemoryBackend.makeLocal (no Effect runtime)", () => {
  it("checks with an injected clock", () => {
    let now = 1_000_000
    const local = MemoryBackend.makeLocal({ policies: validated(policies), now: () => now })
    const remaining = Array.from({ length: 5 }, () => decisionOf(local.check("api", "k")).remaining)
    expect(remaining).toEqual([4, 3, 2, 1, 0])
    const denied = decisionOf(local.check("api", "k"))
    expect(denied).toMatchObject({ allowed: false, retryAfterMs: EMISSION_MS })
    expect(decisionOf(local.peek("api", "k")).allowed).toBe(false)
    now += EMISSION_MS
    expect(decisionOf(local.peek("api", "k"))).toMatchObject({ allowed: true, remaining: 1 })
    expect(decisionOf(local.check("api", "k"))).toMatchObject({ allowed: true, remaining: 0 })
    expect(faultOf(local.check("api", "k", 0))._tag).toBe("InvalidArgument")
  })

  it("reads Date.now by default", () => {
    const local = MemoryBackend.makeLocal({ policies: validated(policies) })
    const before = Date.now()
    const decision = decisionOf(local.check("api", "k"))
    const after = Date.now()
    expect(decision.allowed).toBe(true)
    // resetAt is ceil(now + 720 000) for the clock read during the check.
    expect(decision.resetAt).toBeGreaterThanOrEqual(before + EMISSION_MS)
    expect(decision.resetAt).toBeLessThanOrEqual(after + EMISSION_MS + 1)
  })

  it("two makeLocal limiters keep separate state", () => {
    const a = MemoryBackend.makeLocal({ policies: validated(policies), now: () => 0 })
    const b = MemoryBackend.makeLocal({ policies: validated(policies), now: () => 0 })
    for (let i = 0; i < 5; i++) decisionOf(a.check("api", "k"))
    expect(decisionOf(a.check("api", "k")).allowed).toBe(false)
    expect(decisionOf(b.check("api", "k")).remaining).toBe(4)
  })
})
