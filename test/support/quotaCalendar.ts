/**
 * A plain calendar oracle for quotas, written with JS `Date` UTC arithmetic (no code shared with the
 * engine's whole-number calendar), and the calendar edge cases every door replays under `TestClock`:
 * month ends (31 → 30, February 28 and 29), leap days (2000 and 2024 have one, 2100 does not), offsets of
 * ±14 h, weeks starting on Sunday or Saturday, and the year's end.
 */
import { expect } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { RateLimiterError } from "../../src/Errors.js"
import type { Policy, Quota } from "../../src/Policy.js"
import type { RateLimiter } from "../../src/services/RateLimiter.js"

/** A quota counted per period (every cadence but rolling). */
export type PeriodQuota = Exclude<Quota, { readonly resetCadence: "rolling" }>

/** `a` floor-divided by `b` (b > 0), exactly, for any safe integers. */
const floorDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b
  return a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q
}

/** The period `[start, end)` holding `now`, by `Date` arithmetic at the quota's fixed offset. */
export const oraclePeriod = (quota: PeriodQuota, now: number): { readonly start: number; readonly end: number } => {
  if (quota.resetCadence === "fixed") {
    const k = floorDiv(BigInt(now) - BigInt(quota.anchor), BigInt(quota.periodMs))
    const start = Number(BigInt(quota.anchor) + k * BigInt(quota.periodMs))
    return { start, end: start + quota.periodMs }
  }
  const offsetMs = quota.offsetMinutes * 60_000
  const local = new Date(now + offsetMs)
  const year = local.getUTCFullYear()
  const month = local.getUTCMonth()
  const date = local.getUTCDate()
  // Date.UTC reads years 0–99 as 1900–1999; setUTCFullYear does not.
  const utc = (y: number, m: number, d: number): number => {
    const at = new Date(0)
    at.setUTCFullYear(y, m, d)
    return at.getTime() - offsetMs
  }
  switch (quota.resetCadence) {
    case "calendar-day":
      return { start: utc(year, month, date), end: utc(year, month, date + 1) }
    case "calendar-week": {
      const back = (local.getUTCDay() - quota.weekStartsOn + 7) % 7
      return { start: utc(year, month, date - back), end: utc(year, month, date - back + 7) }
    }
    case "calendar-month":
      return { start: utc(year, month, 1), end: utc(year, month + 1, 1) }
  }
}

/**
 * A calendar edge: at `at`, the quota's period ends at `end` (written by hand), and the period after it
 * ends at `following`.
 */
export interface CalendarEdge {
  readonly name: string
  readonly quota: PeriodQuota
  readonly at: number
  readonly end: number
  readonly following: number
}

const HOUR = 3_600_000
const month = (limit: number, offsetMinutes = 0): PeriodQuota => ({
  kind: "quota",
  resetCadence: "calendar-month",
  limit,
  offsetMinutes
})
const day = (limit: number, offsetMinutes = 0): PeriodQuota => ({
  kind: "quota",
  resetCadence: "calendar-day",
  limit,
  offsetMinutes
})
const week = (limit: number, weekStartsOn: number, offsetMinutes = 0): PeriodQuota => ({
  kind: "quota",
  resetCadence: "calendar-week",
  limit,
  offsetMinutes,
  weekStartsOn
})

/** The edges every door replays; each `end` and `following` is written out, not computed. */
export const calendarEdges: ReadonlyArray<CalendarEdge> = [
  {
    name: "January 31st → February (28 days in 2023)",
    quota: month(3),
    at: Date.UTC(2023, 0, 31, 12),
    end: Date.UTC(2023, 1, 1),
    following: Date.UTC(2023, 2, 1)
  },
  {
    name: "March 31st → April (30 days)",
    quota: month(2),
    at: Date.UTC(2024, 2, 31, 23, 59),
    end: Date.UTC(2024, 3, 1),
    following: Date.UTC(2024, 4, 1)
  },
  {
    name: "February 29th 2024 (a leap day) → March",
    quota: month(2),
    at: Date.UTC(2024, 1, 29, 10),
    end: Date.UTC(2024, 2, 1),
    following: Date.UTC(2024, 3, 1)
  },
  {
    name: "January 2024 → a 29-day February",
    quota: month(2),
    at: Date.UTC(2024, 0, 15),
    end: Date.UTC(2024, 1, 1),
    following: Date.UTC(2024, 2, 1)
  },
  {
    name: "February 28th 2100 (no leap day: divisible by 100) → March",
    quota: month(2),
    at: Date.UTC(2100, 1, 28, 18),
    end: Date.UTC(2100, 2, 1),
    following: Date.UTC(2100, 3, 1)
  },
  {
    name: "January 2000 → a 29-day February (divisible by 400)",
    quota: month(2),
    at: Date.UTC(2000, 0, 31, 23),
    end: Date.UTC(2000, 1, 1),
    following: Date.UTC(2000, 2, 1)
  },
  {
    name: "the year's end, monthly",
    quota: month(2),
    at: Date.UTC(2024, 11, 31, 23, 59, 59),
    end: Date.UTC(2025, 0, 1),
    following: Date.UTC(2025, 1, 1)
  },
  {
    name: "the year's end, daily",
    quota: day(2),
    at: Date.UTC(2024, 11, 31, 12),
    end: Date.UTC(2025, 0, 1),
    following: Date.UTC(2025, 0, 2)
  },
  {
    name: "the year's end, weekly from Monday (2024-12-30 is a Monday)",
    quota: week(2, 1),
    at: Date.UTC(2024, 11, 29, 20),
    end: Date.UTC(2024, 11, 30),
    following: Date.UTC(2025, 0, 6)
  },
  {
    name: "UTC+14: local midnight of January 1st is 10:00 UTC on December 31st",
    quota: month(2, 840),
    at: Date.UTC(2024, 11, 31, 9),
    end: Date.UTC(2024, 11, 31, 10),
    following: Date.UTC(2025, 0, 31, 10)
  },
  {
    name: "UTC-14: local midnight of March 1st 2024 is 14:00 UTC on March 1st",
    quota: month(2, -840),
    at: Date.UTC(2024, 2, 1, 13),
    end: Date.UTC(2024, 2, 1, 14),
    following: Date.UTC(2024, 3, 1, 14)
  },
  {
    name: "UTC+5:30, daily",
    quota: day(2, 330),
    at: Date.UTC(2024, 5, 10, 18),
    end: Date.UTC(2024, 5, 10, 18, 30),
    following: Date.UTC(2024, 5, 11, 18, 30)
  },
  {
    name: "weeks from Sunday: Saturday 2024-03-02 → Sunday the 3rd",
    quota: week(2, 0),
    at: Date.UTC(2024, 2, 2, 15),
    end: Date.UTC(2024, 2, 3),
    following: Date.UTC(2024, 2, 10)
  },
  {
    name: "weeks from Saturday at UTC-14: a local Friday → the local Saturday",
    quota: week(2, 6, -840),
    at: Date.UTC(2024, 2, 2, 3),
    end: Date.UTC(2024, 2, 2, 14),
    following: Date.UTC(2024, 2, 9, 14)
  },
  {
    name: "weeks from Monday at UTC+14, across February 29th",
    quota: week(2, 1, 840),
    at: Date.UTC(2024, 1, 29),
    end: Date.UTC(2024, 2, 3, 10),
    following: Date.UTC(2024, 2, 10, 10)
  },
  {
    name: "fixed 7-day periods anchored at 2024-01-01 09:00 UTC",
    quota: { kind: "quota", resetCadence: "fixed", limit: 2, periodMs: 7 * 24 * HOUR, anchor: Date.UTC(2024, 0, 1, 9) },
    at: Date.UTC(2024, 0, 15, 8),
    end: Date.UTC(2024, 0, 15, 9),
    following: Date.UTC(2024, 0, 22, 9)
  }
]

/** A limiter policy named `name` with the edge's quota (prefix `prefix`). */
export const edgePolicy = (name: string, prefix: string, edge: CalendarEdge): Policy => ({
  kind: "limiter",
  name,
  prefix,
  maxKeys: 1000,
  strategy: edge.quota
})

/**
 * Replays `edge` on `limiter`'s policy `name` (built with `edgePolicy`), key `key`, under `TestClock`: at
 * `at` the whole limit is admitted and then refused until `end`, as peek and forecast say; 1 ms before
 * `end` it is still refused; at `end` the next period (ending at `following`) admits again. Two writes
 * are never less than a second of simulated time before their period's end, so a Redis door on Effect's
 * clock keeps every key it needs (its TTLs run in real time).
 */
export const replayEdge = (
  limiter: RateLimiter["Type"],
  name: string,
  key: string,
  edge: CalendarEdge
): Effect.Effect<void, RateLimiterError> =>
  Effect.gen(function*() {
    const { at, end, following, quota } = edge
    const limit = quota.limit
    yield* TestClock.setTime(at)
    for (let i = 1; i <= limit; i++) {
      expect({ ...(yield* limiter.check(name, key)) }).toEqual({
        allowed: true,
        limit,
        remaining: limit - i,
        resetAt: end,
        retryAfterMs: 0
      })
    }
    const refused = { allowed: false, limit, remaining: 0, resetAt: end, retryAfterMs: end - at }
    expect({ ...(yield* limiter.check(name, key)) }).toEqual(refused)
    expect({ ...(yield* limiter.peek(name, key)) }).toEqual(refused)
    expect({ ...(yield* limiter.forecast(name, key)) }).toEqual({ spendableNow: 0, nextReplenishAt: end, fullAt: end })
    yield* TestClock.setTime(end - 1)
    expect({ ...(yield* limiter.check(name, key)) }).toEqual({ ...refused, retryAfterMs: 1 })
    yield* TestClock.setTime(end)
    expect({ ...(yield* limiter.forecast(name, key, 1)) }).toEqual({
      spendableNow: limit,
      nextReplenishAt: end,
      fullAt: end
    })
    expect({ ...(yield* limiter.check(name, key)) }).toEqual({
      allowed: true,
      limit,
      remaining: limit - 1,
      resetAt: following,
      retryAfterMs: 0
    })
    expect({ ...(yield* limiter.forecast(name, key, 1)) }).toEqual({
      spendableNow: limit - 1,
      nextReplenishAt: following,
      fullAt: following
    })
  })
