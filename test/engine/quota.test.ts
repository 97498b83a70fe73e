/**
 * The quota engine against a plain calendar oracle (`Date` UTC arithmetic, test/support/quotaCalendar.ts):
 * the civil date of any day, the period holding any instant for every cadence at every offset within
 * ±14 h and every week start, the hand-written calendar edges, and an exact admission model (a quota
 * admits iff what its period already counted plus the cost fits the limit; `resetAt` is the period's end).
 * A rolling quota decides exactly as the sliding window it delegates to.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { civilOf, DAY_MS } from "../../src/engine/calendar.js"
import { rateEngine } from "../../src/engine/index.js"
import * as QuotaEngine from "../../src/engine/quota.js"
import * as SlidingWindow from "../../src/engine/slidingWindow.js"
import type { Quota } from "../../src/Policy.js"
import { calendarEdges, oraclePeriod, type PeriodQuota } from "../support/quotaCalendar.js"

const RUNS = Number(process.env["ENGINE_PROP_RUNS"] ?? 300)

const edgeInstants = calendarEdges.flatMap((e) => [e.at, e.end - 1, e.end, e.following - 1])

/** Instants from 1906 to 2103, and next to the calendar edges. */
const instantArb = fc.oneof(
  fc.integer({ min: -2_000_000_000_000, max: 4_200_000_000_000 }),
  fc.constantFrom(...edgeInstants)
)

/** Instants up to the year 275 000 or so (the oracle's `Date` range, less the longest period). */
const anyInstantArb = fc.oneof(instantArb, fc.integer({ min: 0, max: 8_640_000_000_000_000 - 60 * DAY_MS }))

const offsetArb = fc.oneof(fc.constantFrom(0, 840, -840, 330, 345, -300, -570), fc.integer({ min: -840, max: 840 }))

const periodQuotaArb: fc.Arbitrary<PeriodQuota> = fc.oneof(
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constantFrom("calendar-month" as const, "calendar-day" as const),
    limit: fc.integer({ min: 1, max: 20 }),
    offsetMinutes: offsetArb
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("calendar-week" as const),
    limit: fc.integer({ min: 1, max: 20 }),
    offsetMinutes: offsetArb,
    weekStartsOn: fc.integer({ min: 0, max: 6 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("fixed" as const),
    limit: fc.integer({ min: 1, max: 20 }),
    periodMs: fc.oneof(fc.constantFrom(1, 1000, DAY_MS, 7 * DAY_MS), fc.integer({ min: 1, max: 40 * DAY_MS })),
    anchor: fc.oneof(fc.constant(0), fc.integer({ min: -4_000_000_000_000, max: 4_000_000_000_000 }))
  })
)

describe("quota calendar arithmetic", () => {
  it("the civil date of any day number is Date's", () => {
    fc.assert(
      fc.property(fc.integer({ min: -700_000, max: 99_000_000 }), (day) => {
        const date = new Date(day * DAY_MS)
        expect(civilOf(day)).toEqual({
          year: date.getUTCFullYear(),
          month: date.getUTCMonth() + 1,
          day: date.getUTCDate()
        })
      }),
      { numRuns: RUNS * 10 }
    )
  })

  it("the period holding any instant is the oracle's, for every cadence, offset and week start", () => {
    fc.assert(
      fc.property(periodQuotaArb, anyInstantArb, (quota, now) => {
        const period = QuotaEngine.periodOf(quota)(now)
        expect(period).toEqual(oraclePeriod(quota, now))
        expect(period.start <= now && now < period.end).toBe(true)
      }),
      { numRuns: RUNS * 10 }
    )
  })

  it.each(calendarEdges)("$name", (edge) => {
    const period = QuotaEngine.periodOf(edge.quota)
    expect(period(edge.at).end).toBe(edge.end)
    expect(period(edge.end - 1).end).toBe(edge.end)
    expect(period(edge.end)).toEqual({ start: edge.end, end: edge.following })
    // The oracle agrees with the hand-written instants too.
    expect(oraclePeriod(edge.quota, edge.at).end).toBe(edge.end)
    expect(oraclePeriod(edge.quota, edge.end).end).toBe(edge.following)
  })
})

/** How time moves before a check: a small step, a jump of whole periods, or to the period's end ±1. */
type Move =
  | { readonly _tag: "step"; readonly dt: number }
  | { readonly _tag: "edge"; readonly offset: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Move>({ _tag: "step", dt: 0 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 3_600_000 }).map((dt): Move => ({ _tag: "step", dt })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 90 * DAY_MS }).map((dt): Move => ({ _tag: "step", dt })) },
  { weight: 3, arbitrary: fc.constantFrom(-1, 0, 1).map((offset): Move => ({ _tag: "edge", offset })) }
)

describe("quota engine", () => {
  it("admits iff the period's count plus the cost fits, with the oracle's resetAt and retryAfterMs", () => {
    fc.assert(
      fc.property(
        periodQuotaArb,
        instantArb,
        fc.array(fc.record({ move: moveArb, cost: fc.integer({ min: 1, max: 25 }) }), { minLength: 1, maxLength: 60 }),
        (quota, start, ops) => {
          const engine = QuotaEngine.make(quota)
          const used = new Map<number, number>()
          let state: QuotaEngine.State | undefined
          let now = start
          for (const op of ops) {
            now = op.move._tag === "step"
              ? now + op.move.dt
              : Math.max(now, oraclePeriod(quota, now).end + op.move.offset)
            const period = oraclePeriod(quota, now)
            const before = used.get(period.start) ?? 0
            const fits = before + op.cost <= quota.limit
            const step = engine.check(state, now, op.cost)
            expect(step.decision).toEqual({
              allowed: fits,
              limit: quota.limit,
              remaining: fits ? quota.limit - before - op.cost : Math.max(0, quota.limit - before),
              resetAt: period.end,
              retryAfterMs: fits ? 0 : period.end - now
            })
            if (fits) {
              used.set(period.start, before + op.cost)
              // The key lives exactly to the period's end (what the Lua's PEXPIRE sets).
              expect(engine.expiresAt(step.state!, now)).toBe(period.end)
            }
            state = step.state
            const peeked = engine.peek(state, now)
            expect([peeked.remaining, peeked.resetAt]).toEqual([
              Math.max(0, quota.limit - (used.get(period.start) ?? 0)),
              period.end
            ])
            const forecast = engine.forecast(state, now, op.cost)
            const count = used.get(period.start) ?? 0
            expect(forecast).toEqual({
              spendableNow: Math.floor(Math.max(0, quota.limit - count) / op.cost),
              nextReplenishAt: count === 0 ? now : period.end,
              fullAt: count === 0 ? now : period.end
            })
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  it("a rolling quota decides exactly as the sliding window of its period and buckets", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 10, max: 100_000 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 1_800_000_000_000 }),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 20_000 }), cost: fc.integer({ min: 1, max: 25 }) }), {
          maxLength: 60
        }),
        (limit, periodMs, buckets, start, ops) => {
          const quota: Quota = { kind: "quota", resetCadence: "rolling", limit, periodMs, buckets }
          const engine = rateEngine(quota)
          const sliding = SlidingWindow.make({ limit, windowMs: periodMs, buckets })
          let a: unknown
          let b: SlidingWindow.State | undefined
          let now = start
          for (const op of ops) {
            now += op.dt
            const x = engine.check(a, now, op.cost)
            const y = sliding.check(b, now, op.cost)
            expect(x).toEqual(y)
            a = x.state
            b = y.state
            expect(engine.forecast(a, now, op.cost)).toEqual(sliding.forecast(b, now, op.cost))
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  it("keeps its state between checks of one period and starts afresh at the next", () => {
    const quota: PeriodQuota = { kind: "quota", resetCadence: "calendar-month", limit: 3, offsetMinutes: 0 }
    const engine = QuotaEngine.make(quota)
    const at = Date.UTC(2024, 1, 29, 23, 59, 59, 999)
    const first = engine.check(undefined, at, 2)
    expect(first.state).toEqual({ start: Date.UTC(2024, 1, 1), count: 2, expiresAt: Date.UTC(2024, 2, 1) })
    expect(engine.isFresh(first.state!, at)).toBe(false)
    expect(engine.isFresh(first.state!, Date.UTC(2024, 2, 1))).toBe(true)
    const next = engine.check(first.state, Date.UTC(2024, 2, 1), 3)
    expect(next.decision).toEqual({
      allowed: true,
      limit: 3,
      remaining: 0,
      resetAt: Date.UTC(2024, 3, 1),
      retryAfterMs: 0
    })
  })
})
