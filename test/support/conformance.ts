/**
 * The `RateLimiter` conformance suite, written once and run against every door (memory, Redis, the
 * gRPC service). It needs no control over time: every limit is long enough that the suite runs inside
 * one window, and every test uses keys of its own, so it also runs against a shared, live backend. The
 * epoch-aligned fixed windows (the fixed window, the token budget, the fair escrow) last 30 days, as an
 * hour's rolls over at the top of every hour; the calendar quotas take the fixed UTC offset at which it
 * is about noon when the suite is loaded (and the fixed one an anchor half a period back), so their
 * boundaries are at least 11 hours away.
 */
import { describe, expect, layer, type Vitest } from "@effect/vitest"
import { Effect, Either, Exit, type Layer } from "effect"
import { randomUUID } from "node:crypto"
import { CapacityExceeded, InvalidArgument, type RateLimiterError } from "../../src/Errors.js"
import type { Policy } from "../../src/Policy.js"
import { admitted, limit, RateLimiter } from "../../src/services/RateLimiter.js"
import { LONG_WINDOW_MS } from "./longWindow.js"
import { oraclePeriod, type PeriodQuota } from "./quotaCalendar.js"

const HOUR = 3_600_000
const DAY = 24 * HOUR

const loadedAt = Date.now()
/** The fixed UTC offset (whole minutes, within ±12 h) at which it is about noon at `loadedAt`. */
const noonOffset = 720 - (Math.floor(loadedAt / 60_000) % 1440)
/** The weekday (0 = Sunday) three days after today's at that offset: its weeks start in 2.5 days or more. */
const weekStart = (new Date(loadedAt + noonOffset * 60_000).getUTCDay() + 3) % 7

/** The calendar and fixed quotas of the suite, by policy name. */
export const conformanceQuotas: Readonly<Record<string, PeriodQuota>> = {
  "quota-month": { kind: "quota", resetCadence: "calendar-month", limit: 3, offsetMinutes: noonOffset },
  "quota-week": {
    kind: "quota",
    resetCadence: "calendar-week",
    limit: 2,
    offsetMinutes: noonOffset,
    weekStartsOn: weekStart
  },
  "quota-day": { kind: "quota", resetCadence: "calendar-day", limit: 2, offsetMinutes: noonOffset },
  "quota-fixed": { kind: "quota", resetCadence: "fixed", limit: 2, periodMs: DAY, anchor: loadedAt - DAY / 2 }
}

const quotaDay: PeriodQuota = { kind: "quota", resetCadence: "calendar-day", limit: 1, offsetMinutes: noonOffset }

/** The policies the suite runs against. Every backend under test must be built with exactly these. */
export const conformancePolicies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "burst",
    prefix: "conf-burst",
    maxKeys: 10_000,
    strategy: { kind: "gcra", limit: 5, periodMs: HOUR, burst: 5 }
  },
  {
    kind: "limiter",
    name: "window",
    prefix: "conf-window",
    maxKeys: 10_000,
    strategy: { kind: "fixedWindow", limit: 2, windowMs: LONG_WINDOW_MS }
  },
  {
    kind: "limiter",
    name: "bucket",
    prefix: "conf-bucket",
    maxKeys: 10_000,
    strategy: { kind: "tokenBucket", capacity: 10, refillPerSec: 0.001 }
  },
  {
    kind: "limiter",
    name: "sliding",
    prefix: "conf-sliding",
    maxKeys: 10_000,
    strategy: { kind: "slidingWindow", limit: 4, windowMs: HOUR, buckets: 10 }
  },
  {
    kind: "limiter",
    name: "log",
    prefix: "conf-log",
    maxKeys: 10_000,
    strategy: { kind: "slidingWindowLog", limit: 3, windowMs: HOUR }
  },
  ...Object.entries(conformanceQuotas).map(([name, strategy]): Policy => ({
    kind: "limiter",
    name,
    prefix: `conf-${name}`,
    maxKeys: 10_000,
    strategy
  })),
  {
    kind: "limiter",
    name: "quota-rolling",
    prefix: "conf-quota-rolling",
    maxKeys: 10_000,
    strategy: { kind: "quota", resetCadence: "rolling", limit: 4, periodMs: HOUR, buckets: 10 }
  },
  {
    kind: "meter",
    name: "tokens",
    prefix: "conf-tokens",
    maxKeys: 10_000,
    budget: 10,
    windowMs: LONG_WINDOW_MS,
    shared: false
  },
  {
    kind: "admitter",
    name: "pool",
    prefix: "conf-pool",
    maxKeys: 10_000,
    concurrency: {
      algorithm: "fixed",
      minLimit: 3,
      maxLimit: 3,
      initialLimit: 3,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 100
    }
  },
  {
    kind: "admitter",
    name: "unified",
    prefix: "conf-unified",
    maxKeys: 10_000,
    concurrency: {
      algorithm: "fixed",
      minLimit: 2,
      maxLimit: 2,
      initialLimit: 2,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 100
    },
    rate: { kind: "gcra", limit: 1, periodMs: HOUR, burst: 1 }
  },
  {
    kind: "admitter",
    name: "unified-quota",
    prefix: "conf-unified-quota",
    maxKeys: 10_000,
    concurrency: {
      algorithm: "fixed",
      minLimit: 5,
      maxLimit: 5,
      initialLimit: 5,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 100
    },
    rate: quotaDay
  },
  {
    kind: "fair",
    name: "fair",
    prefix: "conf-fair",
    maxKeys: 10_000,
    fairEscrow: { limit: 10, windowMs: LONG_WINDOW_MS, weights: { gold: 4 } }
  }
]

/** The rate limiters of the suite and their capacities: what each admits on a cold key, at most. */
const rateCapacities: ReadonlyArray<readonly [string, number]> = [
  ["burst", 5],
  ["window", 2],
  ["bucket", 10],
  ["sliding", 4],
  ["log", 3],
  ["quota-month", 3],
  ["quota-week", 2],
  ["quota-day", 2],
  ["quota-fixed", 2],
  ["quota-rolling", 4]
]

const badCosts: ReadonlyArray<readonly [string, number]> = [
  ["zero", 0],
  ["negative", -1],
  ["NaN", Number.NaN],
  ["infinite", Number.POSITIVE_INFINITY],
  ["fractional", 1.5],
  ["above 2^53 - 1", 2 ** 53]
]

/**
 * Runs the suite against `backend`, a layer built with `conformancePolicies`. Admission-pool tests use
 * pool policies shared by the whole suite, so they run one after another within this describe block.
 */
export const runConformance = <E>(name: string, backend: Layer.Layer<RateLimiter, E>): void =>
  conformanceSuite(name, (tests) => layer(backend, { timeout: 60_000, excludeTestServices: true })(tests))

/** The suite's tests, to register on an `it` whose context holds the `RateLimiter` under test. */
export type ConformanceTests = (it: Vitest.MethodsNonLive<RateLimiter, true>) => void

/**
 * The suite in a describe block named after `name`, its tests registered by `within` on an `it` of its
 * choice: e.g. `(tests) => it.layer(backend)(tests)` under a `layer` that shares one Redis Cluster
 * between suites. Limiter keys are fresh per call; the admitters' lease sets are per policy, so two
 * suites on one Redis must run one after the other (as describe blocks of one file do).
 */
export const conformanceSuite = (name: string, within: (tests: ConformanceTests) => void): void => {
  // A fresh namespace per run, so a live shared backend (Redis, a server) never sees old state.
  const run = randomUUID().slice(0, 8)
  const fresh = (label: string) => `${run}:${label}:${randomUUID().slice(0, 8)}`

  describe(`RateLimiter conformance: ${name}`, () => {
    within((it) => {
      it.effect("a cold gcra burst admits the burst, then denies with a retry hint", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("burst")
          const remaining: Array<number> = []
          for (let i = 0; i < 5; i++) {
            const decision = yield* limiter.check("burst", key)
            expect(decision.allowed).toBe(true)
            expect(decision.limit).toBe(5)
            expect(decision.retryAfterMs).toBe(0)
            remaining.push(decision.remaining)
          }
          expect(remaining).toEqual([4, 3, 2, 1, 0])
          const denied = yield* limiter.check("burst", key)
          expect(denied.allowed).toBe(false)
          expect(denied.remaining).toBe(0)
          expect(denied.retryAfterMs).toBeGreaterThan(0)
          expect(denied.resetAt).toBeGreaterThan(0)
        }))

      it.effect("keys are independent", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("a")
          const b = fresh("b")
          for (let i = 0; i < 2; i++) yield* limiter.check("window", a)
          expect((yield* limiter.check("window", a)).allowed).toBe(false)
          const other = yield* limiter.check("window", b)
          expect(other.allowed).toBe(true)
          expect(other.remaining).toBe(1)
        }))

      it.effect("a cost above the remaining capacity is denied and consumes nothing", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("cost")
          expect((yield* limiter.check("bucket", key, 4)).remaining).toBe(6)
          const big = yield* limiter.check("bucket", key, 7)
          expect([big.allowed, big.limit, big.remaining]).toEqual([false, 10, 6])
          expect(big.retryAfterMs).toBeGreaterThan(0)
          const after = yield* limiter.check("bucket", key, 6)
          expect(after.allowed).toBe(true)
          expect(after.remaining).toBe(0)
        }))

      it.effect("a cost above a policy's capacity is CapacityExceeded, on every call, and changes no state", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          for (const [policy, capacity] of rateCapacities) {
            const key = fresh(`over-${policy}`)
            const other = fresh(`over-${policy}-other`)
            for (const cost of [capacity + 1, capacity * 1000]) {
              // Asked twice: the second answer is the same (no retry hint that never comes true).
              for (let attempt = 0; attempt < 2; attempt++) {
                const error = yield* Effect.flip(limiter.check(policy, key, cost))
                expect(error).toEqual(new CapacityExceeded({ policy, key, cost, capacity }))
              }
              const many = yield* Effect.flip(limiter.checkMany(policy, [key, other], cost))
              expect(many).toEqual(new CapacityExceeded({ policy, key, cost, capacity }))
              expect((yield* Effect.flip(limit(policy, key, cost)))._tag).toBe("CapacityExceeded")
            }
            // Nothing was consumed: the whole capacity is still there, for both keys, in one call.
            const whole = yield* limiter.checkMany(policy, [key, other], capacity)
            expect([policy, whole.map((d) => [d.allowed, d.remaining])]).toEqual([policy, [[true, 0], [true, 0]]])
          }
          // A unified admitter's cost is its rate axis's (a gcra of burst 1): nothing is held or spent.
          const u = fresh("over-unified")
          const admission = yield* Effect.flip(Effect.scoped(limiter.admit("unified", u, { cost: 2 })))
          expect(admission).toEqual(new CapacityExceeded({ policy: "unified", key: u, cost: 2, capacity: 1 }))
          expect((yield* Effect.flip(Effect.void.pipe(admitted("unified", u, { cost: 2 }))))._tag).toBe(
            "CapacityExceeded"
          )
          expect((yield* Effect.scoped(limiter.admit("unified", u))).held).toBe(true)
          // A pure concurrency admitter spends its cost on no axis; a token budget admits a debit of any
          // size while its window is unspent (the crossing debit counts in full): neither has a capacity.
          expect((yield* Effect.scoped(limiter.admit("pool", fresh("over-pool"), { cost: 1000 }))).held).toBe(true)
          const huge = yield* limiter.debit("tokens", fresh("over-tokens"), 1000)
          expect([huge.allowed, huge.remaining]).toEqual([true, 0])
          // A cost within the capacity but above what is left is still a denial, as the contract has it.
          const w = fresh("over-window")
          expect((yield* limiter.check("window", w)).allowed).toBe(true)
          expect((yield* limiter.check("window", w, 2)).allowed).toBe(false)
        }))

      it.effect("every strategy admits exactly its limit on a cold key", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          for (const [policy, admits] of rateCapacities) {
            const key = fresh(policy)
            let allowed = 0
            for (let i = 0; i < admits + 2; i++) {
              if ((yield* limiter.check(policy, key)).allowed) allowed++
            }
            expect([policy, allowed]).toEqual([policy, admits])
          }
        }))

      it.effect("checkMany answers in input order at one instant", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("many-a")
          const b = fresh("many-b")
          const decisions = yield* limiter.checkMany("window", [a, b, a, a])
          expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual([
            [true, 1],
            [true, 1],
            [true, 0],
            [false, 0]
          ])
          expect(new Set(decisions.map((d) => d.resetAt)).size).toBe(1)
          expect(yield* limiter.checkMany("window", [])).toEqual([])
        }))

      it.effect("a gcra checkMany spends as the same checks one by one: a key named again sees its earlier spend", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("many-gcra-a")
          const b = fresh("many-gcra-b")
          const decisions = yield* limiter.checkMany("burst", [a, b, a, a, a, a, a])
          expect(decisions.map((d) => [d.allowed, d.limit, d.remaining])).toEqual([
            [true, 5, 4],
            [true, 5, 4],
            [true, 5, 3],
            [true, 5, 2],
            [true, 5, 1],
            [true, 5, 0],
            [false, 5, 0]
          ])
          expect(decisions[6]!.retryAfterMs).toBeGreaterThan(0)
          // A cost of 2 on a fresh key: 5 → 3 → 1, then a denial that spends nothing.
          const c = fresh("many-gcra-c")
          const twos = yield* limiter.checkMany("burst", [c, c, c], 2)
          expect(twos.map((d) => [d.allowed, d.remaining])).toEqual([[true, 3], [true, 1], [false, 1]])
          expect((yield* limiter.check("burst", c)).remaining).toBe(0)
        }))

      it.effect("peek does not consume", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("peek")
          yield* limiter.check("window", key)
          const first = yield* limiter.peek("window", key)
          const second = yield* limiter.peek("window", key)
          expect(first.allowed).toBe(true)
          expect(second).toEqual(first)
          const check = yield* limiter.check("window", key)
          expect(check.allowed).toBe(true)
          expect(check.remaining).toBe(0)
          expect((yield* limiter.peek("window", key)).allowed).toBe(false)
        }))

      it.effect("forecast tells what can be spent now, for every strategy", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const cases: ReadonlyArray<readonly [string, number, number]> = [
            ["burst", 1, 5],
            ["burst", 2, 2],
            ["window", 1, 2],
            ["bucket", 3, 3],
            ["sliding", 1, 4],
            ["log", 1, 3],
            ["quota-month", 1, 3],
            ["quota-month", 2, 1],
            ["quota-week", 1, 2],
            ["quota-day", 2, 1],
            ["quota-fixed", 3, 0],
            ["quota-rolling", 2, 2]
          ]
          for (const [policy, cost, spendable] of cases) {
            const forecast = yield* limiter.forecast(policy, fresh("forecast"), cost)
            expect([policy, cost, forecast.spendableNow]).toEqual([policy, cost, spendable])
            expect(forecast.fullAt).toBeGreaterThan(0)
          }
          const key = fresh("forecast-used")
          yield* limiter.check("burst", key, 3)
          const used = yield* limiter.forecast("burst", key)
          expect(used.spendableNow).toBe(2)
          expect(used.fullAt).toBeGreaterThan(Date.now())
          expect(used.nextReplenishAt).toBeLessThanOrEqual(used.fullAt)
        }))

      it.effect("a quota admits its limit per calendar or fixed period and resets at the period's end", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          for (const [policy, quota] of Object.entries(conformanceQuotas)) {
            const key = fresh(policy)
            const before = Date.now()
            const decisions = []
            for (let i = 0; i <= quota.limit; i++) decisions.push(yield* limiter.check(policy, key))
            const after = Date.now()
            const { end } = oraclePeriod(quota, before)
            expect([policy, oraclePeriod(quota, after).end]).toEqual([policy, end])
            expect(decisions.map((d) => [policy, d.allowed, d.limit, d.remaining, d.resetAt])).toEqual(
              decisions.map((_, i) => [policy, i < quota.limit, quota.limit, Math.max(0, quota.limit - i - 1), end])
            )
            const denied = decisions[quota.limit]!
            expect(denied.retryAfterMs).toBeGreaterThanOrEqual(end - after)
            expect(denied.retryAfterMs).toBeLessThanOrEqual(end - before)
            // Peek and forecast read the same period; neither consumes.
            const peeked = yield* limiter.peek(policy, key)
            expect([peeked.allowed, peeked.remaining, peeked.resetAt]).toEqual([false, 0, end])
            expect({ ...(yield* limiter.forecast(policy, key)) }).toEqual({
              spendableNow: 0,
              nextReplenishAt: end,
              fullAt: end
            })
          }
        }))

      it.effect("quota checkMany answers in input order at one instant; a cost above what is left consumes nothing", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("quota-many-a")
          const b = fresh("quota-many-b")
          const decisions = yield* limiter.checkMany("quota-month", [a, b, a, a, a])
          expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual([
            [true, 2],
            [true, 2],
            [true, 1],
            [true, 0],
            [false, 0]
          ])
          expect(new Set(decisions.map((d) => d.resetAt)).size).toBe(1)
          const big = yield* limiter.check("quota-month", b, 3)
          expect([big.allowed, big.remaining]).toEqual([false, 2])
          expect((yield* limiter.check("quota-month", b, 2)).remaining).toBe(0)
        }))

      it.effect("a rolling quota is a sliding window over its period", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("quota-rolling")
          const before = Date.now()
          const first = yield* limiter.check("quota-rolling", key, 3)
          expect([first.allowed, first.limit, first.remaining]).toEqual([true, 4, 1])
          // resetAt is the end of the current bucket (6 min) plus the period.
          expect(first.resetAt).toBeGreaterThan(before + HOUR)
          expect(first.resetAt).toBeLessThanOrEqual(Date.now() + HOUR + HOUR / 10)
          expect((yield* limiter.check("quota-rolling", key, 2)).allowed).toBe(false)
          expect((yield* limiter.peek("quota-rolling", key)).remaining).toBe(1)
        }))

      it.effect("a unified admitter with a quota rate axis binds on rate until the period's end", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("unified-quota")
          const before = Date.now()
          const { end } = oraclePeriod(quotaDay, before)
          yield* Effect.scoped(Effect.gen(function*() {
            const first = yield* limiter.admit("unified-quota", key)
            expect(first.held).toBe(true)
            const second = yield* Effect.scoped(limiter.admit("unified-quota", key))
            expect([second.held, second.bindingAxis, second.decision.resetAt]).toEqual([false, "rate", end])
            expect(second.decision.retryAfterMs).toBeLessThanOrEqual(end - before)
            expect(second.decision.retryAfterMs).toBeGreaterThan(11 * HOUR)
          }))
          const again = yield* Effect.scoped(limiter.admit("unified-quota", key))
          expect([again.held, again.bindingAxis]).toEqual([false, "rate"])
        }))

      it.effect("a token budget admits the crossing debit in full, then refuses", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("budget")
          const first = yield* limiter.debit("tokens", key, 4)
          expect([first.allowed, first.remaining, first.limit]).toEqual([true, 6, 10])
          const crossing = yield* limiter.debit("tokens", key, 7)
          expect([crossing.allowed, crossing.remaining]).toEqual([true, 0])
          const refused = yield* limiter.debit("tokens", key, 1)
          expect(refused.allowed).toBe(false)
          expect(refused.retryAfterMs).toBeGreaterThan(0)
        }))

      it.effect("a token budget peeks and forecasts its window without spending", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("budget-read")
          // A fresh key: the whole budget, resetting at the window's end; nothing spent, so already full.
          const before = Date.now()
          const untouched = yield* limiter.peek("tokens", key)
          expect({ ...untouched, resetAt: 0 }).toEqual({
            allowed: true,
            limit: 10,
            remaining: 10,
            resetAt: 0,
            retryAfterMs: 0
          })
          expect(untouched.resetAt % LONG_WINDOW_MS).toBe(0)
          expect(untouched.resetAt).toBeGreaterThan(before - 5_000)
          const full = yield* limiter.forecast("tokens", key, 3)
          // ceil(10 / 3) debits of 3 in a row are admitted: the fourth crosses the budget in full.
          expect(full.spendableNow).toBe(4)
          expect(full.nextReplenishAt).toBe(full.fullAt)
          expect(full.fullAt).toBeGreaterThan(untouched.resetAt - LONG_WINDOW_MS)
          expect(full.fullAt).toBeLessThanOrEqual(untouched.resetAt)
          // Reading spent nothing.
          const first = yield* limiter.debit("tokens", key, 4)
          expect([first.allowed, first.remaining, first.resetAt]).toEqual([true, 6, untouched.resetAt])
          const peeked = yield* limiter.peek("tokens", key)
          expect({ ...peeked }).toEqual({ ...first })
          expect({ ...(yield* limiter.peek("tokens", key)) }).toEqual({ ...first })
          // Spent in this window: the budget returns whole at its end.
          expect({ ...(yield* limiter.forecast("tokens", key, 3)) }).toEqual({
            spendableNow: 2,
            nextReplenishAt: first.resetAt,
            fullAt: first.resetAt
          })
          expect((yield* limiter.forecast("tokens", key)).spendableNow).toBe(6)
          expect((yield* limiter.forecast("tokens", key, 7)).spendableNow).toBe(1)
          // What the forecast said: one debit of 7 (crossing), then none.
          const crossing = yield* limiter.debit("tokens", key, 7)
          expect([crossing.allowed, crossing.remaining]).toEqual([true, 0])
          const spent = yield* limiter.peek("tokens", key)
          expect([spent.allowed, spent.limit, spent.remaining, spent.resetAt]).toEqual([false, 10, 0, first.resetAt])
          expect(spent.retryAfterMs).toBeGreaterThan(0)
          expect(spent.retryAfterMs).toBeLessThanOrEqual(LONG_WINDOW_MS)
          expect({ ...(yield* limiter.forecast("tokens", key, 1)) }).toEqual({
            spendableNow: 0,
            nextReplenishAt: first.resetAt,
            fullAt: first.resetAt
          })
          const refused = yield* limiter.debit("tokens", key, 1)
          expect([refused.allowed, refused.remaining, refused.resetAt]).toEqual([false, 0, first.resetAt])
        }))

      it.effect("a token budget's forecast is what debits then get", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          for (const tokens of [1, 3, 5, 10, 11]) {
            const key = fresh(`budget-forecast-${tokens}`)
            const forecast = yield* limiter.forecast("tokens", key, tokens)
            expect([tokens, forecast.spendableNow]).toEqual([tokens, Math.ceil(10 / tokens)])
            for (let i = 0; i < forecast.spendableNow; i++) {
              expect([tokens, i, (yield* limiter.debit("tokens", key, tokens)).allowed]).toEqual([tokens, i, true])
            }
            expect([tokens, (yield* limiter.debit("tokens", key, tokens)).allowed]).toEqual([tokens, false])
            expect((yield* limiter.forecast("tokens", key, tokens)).spendableNow).toBe(0)
          }
        }))

      it.effect("an unknown policy is PolicyNotFound", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const error = yield* Effect.flip(limiter.check("nope", fresh("x")))
          expect(error._tag).toBe("PolicyNotFound")
          if (error._tag === "PolicyNotFound") expect(error.policy).toBe("nope")
        }))

      it.effect("a policy name over 256 UTF-8 bytes is InvalidArgument that does not repeat the name", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const name = "p".repeat(100_000)
          const key = fresh("long-name")
          const cases: ReadonlyArray<Effect.Effect<unknown, RateLimiterError>> = [
            limiter.check(name, key),
            limiter.checkMany(name, [key]),
            limiter.peek(name, key),
            limiter.forecast(name, key),
            limiter.debit(name, key),
            limiter.leases.acquire(name, key)
          ]
          for (const op of cases) {
            const error = yield* Effect.flip(op)
            expect(error).toEqual(
              new InvalidArgument({ argument: "policy", reason: "must be at most 256 UTF-8 bytes, got 100000" })
            )
          }
          // The longest name that can exist is still an unknown policy.
          const longest = yield* Effect.flip(limiter.check("p".repeat(256), key))
          expect(longest._tag).toBe("PolicyNotFound")
        }))

      it.effect("a fair escrow splits its budget by weight and serves check only (key = tenant)", () =>
        Effect.gen(function*() {
          // Only this test touches the "fair" policy: its tenants are the window's whole active set.
          const limiter = yield* RateLimiter
          const plain = (d: { readonly allowed: boolean; readonly limit: number; readonly remaining: number }) => ({
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining
          })
          // free alone is guaranteed all 10; then gold (weight 4) joins: gold 8, free 2.
          expect(plain(yield* limiter.check("fair", "free"))).toEqual({ allowed: true, limit: 10, remaining: 9 })
          expect(plain(yield* limiter.check("fair", "gold", 7))).toEqual({ allowed: true, limit: 8, remaining: 1 })
          // gold may not spend free's unused guarantee.
          const denied = yield* limiter.check("fair", "gold", 2)
          expect(plain(denied)).toEqual({ allowed: false, limit: 8, remaining: 1 })
          expect(denied.retryAfterMs).toBeGreaterThan(0)
          expect(plain(yield* limiter.check("fair", "free"))).toEqual({ allowed: true, limit: 2, remaining: 0 })
          const cases: ReadonlyArray<Effect.Effect<unknown, RateLimiterError>> = [
            limiter.checkMany("fair", ["gold"]),
            limiter.peek("fair", "gold"),
            limiter.forecast("fair", "gold"),
            limiter.debit("fair", "gold")
          ]
          for (const op of cases) expect((yield* Effect.flip(op))._tag).toBe("OperationNotSupported")
          expect((yield* Effect.flip(limiter.check("fair", "gold", 0)))._tag).toBe("InvalidArgument")
          // No tenant ever gets more than the window's budget (10). A door that knows its policies says
          // so before the escrow is touched; over the Service door a fair escrow's denial reports the
          // tenant's share as its limit, which grows as tenants leave, so it stays a denial (and the
          // server's escrow has the tenant join, as the contract does).
          const over = yield* Effect.either(limiter.check("fair", "gold", 11))
          if (limiter.policies !== undefined) {
            expect(over).toEqual(
              Either.left(new CapacityExceeded({ policy: "fair", key: "gold", cost: 11, capacity: 10 }))
            )
          } else {
            expect(Either.isRight(over) && !over.right.allowed).toBe(true)
          }
          expect(plain(yield* limiter.check("fair", "gold"))).toEqual({ allowed: true, limit: 8, remaining: 0 })
        }))

      it.effect("an operation the policy's kind does not support is OperationNotSupported", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("ops")
          const cases: ReadonlyArray<Effect.Effect<unknown, RateLimiterError>> = [
            limiter.debit("burst", key),
            limiter.check("tokens", key),
            limiter.checkMany("tokens", [key]),
            limiter.check("pool", key),
            limiter.peek("pool", key),
            limiter.forecast("pool", key),
            limiter.leases.acquire("burst", key)
          ]
          for (const op of cases) {
            const error = yield* Effect.flip(op)
            expect(error._tag).toBe("OperationNotSupported")
          }
          const scoped = yield* Effect.flip(Effect.scoped(limiter.admit("window", key)))
          expect(scoped._tag).toBe("OperationNotSupported")
        }))

      it.effect("bad costs and keys are InvalidArgument and change no state", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("bad")
          for (const [label, cost] of badCosts) {
            for (
              const op of <ReadonlyArray<Effect.Effect<unknown, RateLimiterError>>> [
                limiter.check("window", key, cost),
                limiter.checkMany("window", [key], cost),
                limiter.forecast("window", key, cost),
                limiter.forecast("tokens", key, cost),
                limiter.debit("tokens", key, cost)
              ]
            ) {
              const error = yield* Effect.flip(op)
              expect([label, error._tag]).toEqual([label, "InvalidArgument"])
            }
          }
          for (const badKey of ["", "x".repeat(5000), "lone\ud800surrogate"]) {
            const error = yield* Effect.flip(limiter.check("window", badKey))
            expect(error._tag).toBe("InvalidArgument")
          }
          const many = yield* Effect.flip(limiter.checkMany("window", [key, ""]))
          expect(many._tag).toBe("InvalidArgument")
          for (const badKey of ["", "x".repeat(5000)]) {
            expect((yield* Effect.flip(limiter.peek("tokens", badKey)))._tag).toBe("InvalidArgument")
            expect((yield* Effect.flip(limiter.forecast("tokens", badKey, 1)))._tag).toBe("InvalidArgument")
          }
          // Nothing above touched the key: both units are still there.
          expect((yield* limiter.peek("window", key)).remaining).toBe(2)
          expect((yield* limiter.debit("tokens", key, 10)).remaining).toBe(0)
        }))

      it.effect("a concurrency ceiling holds, releases and re-admits", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("pool")
          const outer = yield* Effect.scoped(Effect.gen(function*() {
            const held = yield* Effect.forEach([1, 2, 3], () => limiter.admit("pool", key))
            expect(held.map((a) => a.held)).toEqual([true, true, true])
            expect(new Set(held.map((a) => a.leaseId)).size).toBe(3)
            for (const admission of held) {
              // Opaque to clients; every door mints at least 128 random bits (Redis adds a routing tag).
              expect(admission.leaseId).toMatch(/^[0-9a-f]{32,40}$/)
              expect(admission.leaseExpiresAt).toBeGreaterThan(0)
              expect(admission.decision.allowed).toBe(true)
            }
            const denied = yield* Effect.scoped(limiter.admit("pool", key))
            expect(denied.held).toBe(false)
            expect(denied.leaseId).toBe("")
            expect(denied.bindingAxis).toBe("concurrency")
            expect(denied.decision.allowed).toBe(false)
            expect(denied.decision.retryAfterMs).toBeGreaterThanOrEqual(1)
            return held.length
          }))
          expect(outer).toBe(3)
          const again = yield* Effect.scoped(limiter.admit("pool", key))
          expect(again.held).toBe(true)
          expect(again.bindingAxis).toBe("")
        }))

      it.effect("a slot is released when its scope fails", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("pool-fail")
          for (let i = 0; i < 4; i++) {
            const exit = yield* Effect.exit(Effect.scoped(
              Effect.zipRight(limiter.admit("pool", key), Effect.fail("boom" as const))
            ))
            expect(Exit.isFailure(exit)).toBe(true)
          }
          const held = yield* Effect.scoped(Effect.forEach([1, 2, 3], () => limiter.admit("pool", key)))
          expect(held.every((a) => a.held)).toBe(true)
        }))

      it.effect("a unified admitter binds on rate for a key, and on concurrency when full", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const a = fresh("ua")
          const b = fresh("ub")
          const c = fresh("uc")
          yield* Effect.scoped(Effect.gen(function*() {
            const first = yield* limiter.admit("unified", a)
            expect(first.held).toBe(true)
            const rateBound = yield* Effect.scoped(limiter.admit("unified", a))
            expect([rateBound.held, rateBound.bindingAxis]).toEqual([false, "rate"])
            expect(rateBound.decision.retryAfterMs).toBeGreaterThan(0)
            const second = yield* limiter.admit("unified", b)
            expect(second.held).toBe(true)
            const full = yield* Effect.scoped(limiter.admit("unified", c))
            expect([full.held, full.bindingAxis]).toEqual([false, "concurrency"])
          }))
          // c was refused on concurrency before its rate axis was touched: its one unit is still there.
          const later = yield* Effect.scoped(limiter.admit("unified", c))
          expect(later.held).toBe(true)
        }))

      it.effect("lease operations: heartbeat renews, release is idempotent, unknown ids are reclaimed", () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const key = fresh("lease")
          const admission = yield* limiter.leases.acquire("pool", key)
          expect(admission.held).toBe(true)
          const beat = yield* limiter.leases.heartbeat([admission.leaseId, "0".repeat(32), ""])
          expect(beat.live).toEqual([admission.leaseId])
          expect(beat.reclaimed).toEqual(["0".repeat(32), ""])
          expect(beat.nextDeadline).toBeGreaterThan(Date.now())
          yield* limiter.leases.release(admission.leaseId, false)
          yield* limiter.leases.release(admission.leaseId, false)
          yield* limiter.leases.release("never-minted", true)
          const after = yield* limiter.leases.heartbeat([admission.leaseId])
          expect(after.live).toEqual([])
          expect(after.reclaimed).toEqual([admission.leaseId])
        }))

      it.effect("limit and admitted turn a denial into RateLimited", () =>
        Effect.gen(function*() {
          const key = fresh("combinators")
          yield* limit("window", key)
          yield* limit("window", key)
          const limited = yield* Effect.flip(limit("window", key))
          expect(limited._tag).toBe("RateLimited")
          if (limited._tag === "RateLimited") expect(limited.decision.allowed).toBe(false)
          const ran = yield* admitted("unified", key)(Effect.succeed("ran"))
          expect(ran).toBe("ran")
          const refused = yield* Effect.flip(admitted("unified", key)(Effect.succeed("ran")))
          expect(refused._tag).toBe("RateLimited")
          // The error names the axis that bound the admission: the key's rate here, the ceiling below.
          if (refused._tag === "RateLimited") expect(refused.bindingAxis).toBe("rate")
          const full = yield* Effect.scoped(Effect.gen(function*() {
            const limiter = yield* RateLimiter
            yield* limiter.admit("unified", fresh("combinators-a"))
            yield* limiter.admit("unified", fresh("combinators-b"))
            return yield* Effect.flip(admitted("unified", fresh("combinators-c"))(Effect.succeed("ran")))
          }))
          expect(full._tag === "RateLimited" && full.bindingAxis).toBe("concurrency")
        }))
    })
  })
}
