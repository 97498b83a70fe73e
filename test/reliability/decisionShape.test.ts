/**
 * A `Decision` is five integers, always: for any policy set the decoder accepts and any call the front
 * accepts, no door answers a decision (or forecast) with a non-integer, negative or unsafe field. Random
 * policies reach the far ends of what the schema allows (limits and periods up to 2^53 − 1, refill rates
 * down to 1e-6 per second), calls use costs up to 2^53 − 1, and time jumps by up to years.
 *
 * The Memory door runs under `TestClock` (time travel); the Redis door runs the Lua in a real
 * `redis-server` on the Redis clock, with fewer runs (each is a round trip per call).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Layer, type Scope, TestClock, TestContext } from "effect"
import * as fc from "fast-check"
import type { Decision, Forecast } from "../../src/Decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { MAX_QUOTA_ANCHOR_MS, type Policy, type Strategy } from "../../src/Policy.js"
import { PolicySet } from "../../src/PolicySet.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { redisServer } from "../support/redisServer.js"

const MEMORY_RUNS = Number(process.env["DECISION_SHAPE_RUNS"] ?? 150)
const REDIS_RUNS = Number(process.env["DECISION_SHAPE_REDIS_RUNS"] ?? 25)
const MAX = Number.MAX_SAFE_INTEGER

/** Small, ordinary and extreme whole numbers ≥ 1. */
const wide = (ordinaryMax: number) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: ordinaryMax }) },
    { weight: 1, arbitrary: fc.constantFrom(1, 2, 2 ** 31, 2 ** 32 + 1, 2 ** 52, MAX - 1, MAX) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: MAX }) }
  )

const strategyArb = (logLimitMax: number): fc.Arbitrary<Strategy> =>
  fc.oneof(
    fc.record({ kind: fc.constant("gcra" as const), limit: wide(50), periodMs: wide(100_000), burst: wide(50) }),
    fc.record({
      kind: fc.constant("tokenBucket" as const),
      capacity: wide(50),
      refillPerSec: fc.oneof(
        fc.constantFrom(1e-6, 0.001, 0.5, 1, 1000, 1e9),
        fc.double({ min: 1e-6, max: 1e6, noNaN: true, noDefaultInfinity: true })
      )
    }),
    fc.record({ kind: fc.constant("fixedWindow" as const), limit: wide(50), windowMs: wide(100_000) }),
    fc.record({
      kind: fc.constant("slidingWindow" as const),
      limit: wide(50),
      windowMs: wide(100_000),
      buckets: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.constantFrom(1000, 2 ** 20))
    }),
    fc.record({
      kind: fc.constant("slidingWindowLog" as const),
      limit: fc.integer({ min: 1, max: logLimitMax }),
      windowMs: wide(100_000)
    }),
    quotaArb
  )

/** Quotas of every cadence, at the offsets' and anchors' far ends too. */
const quotaArb: fc.Arbitrary<Strategy> = fc.oneof(
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constantFrom("calendar-month" as const, "calendar-day" as const),
    limit: wide(50),
    offsetMinutes: fc.oneof(fc.constantFrom(-840, 0, 840), fc.integer({ min: -840, max: 840 }))
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("calendar-week" as const),
    limit: wide(50),
    offsetMinutes: fc.oneof(fc.constantFrom(-840, 0, 840), fc.integer({ min: -840, max: 840 })),
    weekStartsOn: fc.integer({ min: 0, max: 6 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("fixed" as const),
    limit: wide(50),
    periodMs: wide(100_000),
    anchor: fc.oneof(
      fc.integer({ min: -100_000, max: 100_000 }),
      fc.constantFrom(-MAX_QUOTA_ANCHOR_MS, MAX_QUOTA_ANCHOR_MS),
      fc.integer({ min: -MAX_QUOTA_ANCHOR_MS, max: MAX_QUOTA_ANCHOR_MS })
    )
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("rolling" as const),
    limit: wide(50),
    periodMs: wide(100_000),
    buckets: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.constantFrom(1000, 2 ** 20))
  })
)

const concurrencyArb = fc.integer({ min: 1, max: 8 }).chain((minLimit) =>
  fc.record({
    algorithm: fc.constantFrom("aimd" as const, "gradient2" as const),
    minLimit: fc.constant(minLimit),
    maxLimit: fc.integer({ min: minLimit, max: minLimit + 8 }),
    initialLimit: fc.constant(minLimit),
    backoffRatio: fc.constantFrom(0.5, 0.75, 0.9),
    smoothing: fc.constantFrom(0.1, 0.5, 1),
    tolerance: fc.constantFrom(1, 2),
    rttWindow: fc.integer({ min: 1, max: 20 })
  })
)

/** A policy set of one limiter, one meter and one admitter, raw: the decoder decides whether it is valid. */
const policiesArb = (logLimitMax: number): fc.Arbitrary<ReadonlyArray<Policy>> =>
  fc.tuple(strategyArb(logLimitMax), wide(1000), wide(100_000), concurrencyArb, fc.option(strategyArb(logLimitMax)))
    .map(([strategy, budget, windowMs, concurrency, rate]) => [
      { kind: "limiter", name: "lim", prefix: "lim", strategy, maxKeys: 1000 },
      { kind: "meter", name: "met", prefix: "met", budget, windowMs, maxKeys: 1000, shared: false },
      {
        kind: "admitter",
        name: "adm",
        prefix: "adm",
        concurrency,
        ...(rate === null ? {} : { rate }),
        maxKeys: 1000
      }
    ])

type Call =
  | { readonly op: "check" | "forecast" | "debit" | "admit"; readonly key: string; readonly amount: number }
  | { readonly op: "peek"; readonly key: string }
  | { readonly op: "checkMany"; readonly keys: ReadonlyArray<string>; readonly amount: number }

const keyArb = fc.constantFrom("a", "b", "c")
const amountArb = (max: number) =>
  fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: wide(max) })

const callArb = (amountMax: number): fc.Arbitrary<Call> =>
  fc.oneof(
    fc.record({
      op: fc.constantFrom("check" as const, "forecast" as const, "debit" as const, "admit" as const),
      key: keyArb,
      amount: amountArb(amountMax)
    }),
    fc.record({ op: fc.constant("peek" as const), key: keyArb }),
    fc.record({
      op: fc.constant("checkMany" as const),
      keys: fc.array(keyArb, { minLength: 1, maxLength: 3 }),
      amount: amountArb(amountMax)
    })
  )

const stepArb = (amountMax: number) =>
  fc.record({
    call: callArb(amountMax),
    advance: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0) },
      { weight: 4, arbitrary: fc.integer({ min: 1, max: 5_000 }) },
      { weight: 1, arbitrary: fc.constantFrom(86_400_000, 365 * 86_400_000) }
    )
  })

/** Why a decision is not five safe non-negative integers (and a boolean), or undefined. */
const decisionProblem = (decision: Decision): string | undefined => {
  if (typeof decision.allowed !== "boolean") return "allowed is not a boolean"
  for (const field of ["limit", "remaining", "resetAt", "retryAfterMs"] as const) {
    const value = decision[field]
    if (!Number.isSafeInteger(value) || value < 0) return `${field} = ${value}`
  }
  if (decision.allowed && decision.retryAfterMs !== 0) return `allowed with retryAfterMs = ${decision.retryAfterMs}`
  return undefined
}

const forecastProblem = (forecast: Forecast): string | undefined => {
  for (const field of ["spendableNow", "nextReplenishAt", "fullAt"] as const) {
    const value = forecast[field]
    if (!Number.isSafeInteger(value) || value < 0) return `${field} = ${value}`
  }
  return undefined
}

/** Runs one call; its decisions (or forecast) must be well formed; a typed fault is allowed. */
const run = (limiter: RateLimiterService, call: Call): Effect.Effect<ReadonlyArray<string>, never, Scope.Scope> => {
  const decisions = (effect: Effect.Effect<ReadonlyArray<Decision>, unknown, Scope.Scope>) =>
    Effect.map(Effect.either(effect), (result) =>
      Either.isLeft(result)
        ? []
        : result.right.map(decisionProblem).filter((p): p is string => p !== undefined))
  switch (call.op) {
    case "check":
      return decisions(Effect.map(limiter.check("lim", call.key, call.amount), (d) => [d]))
    case "checkMany":
      return decisions(limiter.checkMany("lim", call.keys, call.amount))
    case "peek":
      return decisions(Effect.map(limiter.peek("lim", call.key), (d) => [d]))
    case "debit":
      return decisions(Effect.map(limiter.debit("met", call.key, call.amount), (d) => [d]))
    case "admit":
      return decisions(Effect.map(limiter.admit("adm", call.key, { cost: call.amount }), (a) => [a.decision]))
    case "forecast":
      return Effect.map(Effect.either(limiter.forecast("lim", call.key, call.amount)), (result) => {
        const problem = Either.isLeft(result) ? undefined : forecastProblem(result.right)
        return problem === undefined ? [] : [problem]
      })
  }
}

/** A fault the front raised for a call it should have accepted: only store faults may surface here. */
const unexpectedFault = (cause: Cause.Cause<unknown>): boolean => Cause.isDie(cause)

describe("no door answers a malformed Decision", () => {
  it("Memory (TestClock time travel)", async () => {
    let accepted = 0
    await fc.assert(
      fc.asyncProperty(
        policiesArb(100_000),
        fc.array(stepArb(MAX), { minLength: 1, maxLength: 40 }),
        async (raw, steps) => {
          const set = PolicySet.validate(raw)
          if (Either.isLeft(set)) return true
          accepted++
          const program = Effect.gen(function*() {
            const limiter = yield* RateLimiter
            const problems: Array<string> = []
            yield* TestClock.setTime(1_700_000_000_000)
            for (const step of steps) {
              yield* TestClock.adjust(step.advance)
              for (const problem of yield* Effect.scoped(run(limiter, step.call))) {
                problems.push(`${JSON.stringify(step.call)}: ${problem}`)
              }
            }
            return problems
          }).pipe(Effect.provide(MemoryBackend.layer({ policies: set.right })), Effect.provide(TestContext.TestContext))
          const exit = await Effect.runPromiseExit(program)
          expect(Exit.isSuccess(exit) || !unexpectedFault(exit.cause), String(exit)).toBe(true)
          expect(Exit.isSuccess(exit) ? exit.value : [], JSON.stringify(raw)).toEqual([])
          return true
        }
      ),
      { numRuns: MEMORY_RUNS }
    )
    // The generator reaches past the decoder's bounds on purpose; enough of its sets must still be valid.
    expect(accepted).toBeGreaterThan(MEMORY_RUNS / 4)
  }, 120_000)

  it("Redis (the Lua in a real redis-server)", async () => {
    let accepted = 0
    const program = Effect.gen(function*() {
      const redis = yield* redisServer
      let round = 0
      yield* Effect.promise(() =>
        fc.assert(
          // The log strategy keeps one sorted-set member per unit in Redis: its limit stays small here.
          fc.asyncProperty(
            policiesArb(1000),
            fc.array(stepArb(1000), { minLength: 1, maxLength: 12 }),
            async (raw, steps) => {
              const set = PolicySet.validate(raw.map((p) => ({ ...p, prefix: `r${round}:${p.name}` })))
              round++
              if (Either.isLeft(set)) return true
              accepted++
              const problems = await Effect.runPromise(
                Effect.gen(function*() {
                  const limiter = yield* RateLimiter
                  const found: Array<string> = []
                  for (const step of steps) {
                    for (const problem of yield* Effect.scoped(run(limiter, step.call))) {
                      found.push(`${JSON.stringify(step.call)}: ${problem}`)
                    }
                  }
                  return found
                }).pipe(
                  Effect.provide(RedisBackend.layer({ policies: set.right, redis: redis.url }).pipe(Layer.orDie))
                )
              )
              expect(problems, JSON.stringify(raw)).toEqual([])
              return true
            }
          ),
          { numRuns: REDIS_RUNS }
        )
      )
    })
    await Effect.runPromise(Effect.scoped(program).pipe(Effect.orDie))
    expect(accepted).toBeGreaterThan(REDIS_RUNS / 4)
  }, 120_000)
})
