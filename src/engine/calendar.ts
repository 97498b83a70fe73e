/**
 * Calendar arithmetic for quotas: the civil date (proleptic Gregorian) of a day number, and the calendar
 * period (month, week or day) holding an instant at a fixed UTC offset. Whole-number arithmetic only (no
 * `Date`, no time-zone data), so the Lua (`vendor/lua/src/lib/quota.lua`) computes the very same
 * boundaries from `now` alone, whichever clock supplies it.
 *
 * A day number counts days since 1970-01-01 (negative before it). The civil date comes from a calendar
 * that starts its years on March 1st, so a leap day is the last day of its year, and repeats every 400
 * years (146 097 days):
 *
 * ```
 * z   = day + 719468                     (days since 0000-03-01)
 * era = floor(z / 146097);  e = z - era * 146097                         (0 .. 146096)
 * y   = floor((e - floor(e / 1460) + floor(e / 36524) - floor(e / 146096)) / 365)    (0 .. 399)
 * d   = e - (365 * y + floor(y / 4) - floor(y / 100))                     (0 .. 365, from March 1st)
 * mi  = floor((5 * d + 2) / 153)          (0 = March … 11 = February)
 * dom = d - floor((153 * mi + 2) / 5) + 1
 * month = mi < 10 ? mi + 3 : mi - 9;  year = y + era * 400 + (month <= 2 ? 1 : 0)
 * ```
 *
 * Periods at offset `offsetMs` (local time = `now + offsetMs`; `mod` is floored, as Lua's `%`):
 *
 * ```
 * day   = floor((now + offsetMs) / 86400000)
 * calendar-day:   first = day
 *                 next  = day + 1
 * calendar-week:  first = day - ((day + 4) mod 7 - weekStartsOn) mod 7      (1970-01-01 was a Thursday)
 *                 next  = first + 7
 * calendar-month: first = day - (dom - 1)
 *                 next  = first + the length of that month (28, 29, 30 or 31)
 * start = first * 86400000 - offsetMs;  end = next * 86400000 - offsetMs
 * ```
 *
 * Every value stays a whole number far below 2^53, so each floor is exact and the JS and the Lua agree.
 *
 * @since 0.3.0
 * @internal
 */
import { luaMod } from "./internal.js"

/**
 * One day in ms.
 *
 * @since 0.3.0
 * @internal
 */
export const DAY_MS = 86_400_000

/**
 * A civil date: `month` 1–12, `day` 1–31.
 *
 * @since 0.3.0
 * @internal
 */
export interface CivilDate {
  readonly year: number
  readonly month: number
  readonly day: number
}

/**
 * The civil date of day number `dayNumber` (days since 1970-01-01).
 *
 * @since 0.3.0
 * @internal
 */
export const civilOf = (dayNumber: number): CivilDate => {
  const z = dayNumber + 719_468
  const era = Math.floor(z / 146_097)
  const e = z - era * 146_097
  const y = Math.floor((e - Math.floor(e / 1_460) + Math.floor(e / 36_524) - Math.floor(e / 146_096)) / 365)
  const d = e - (365 * y + Math.floor(y / 4) - Math.floor(y / 100))
  const mi = Math.floor((5 * d + 2) / 153)
  const day = d - Math.floor((153 * mi + 2) / 5) + 1
  const month = mi < 10 ? mi + 3 : mi - 9
  return { year: y + era * 400 + (month <= 2 ? 1 : 0), month, day }
}

/**
 * Whether `year` has a February 29th.
 *
 * @since 0.3.0
 * @internal
 */
export const isLeapYear = (year: number): boolean =>
  luaMod(year, 4) === 0 && (luaMod(year, 100) !== 0 || luaMod(year, 400) === 0)

/**
 * The number of days in `month` (1–12) of `year`.
 *
 * @since 0.3.0
 * @internal
 */
export const daysInMonth = (year: number, month: number): number => {
  if (month === 2) return isLeapYear(year) ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/**
 * A calendar cadence of a quota.
 *
 * @since 0.3.0
 * @internal
 */
export type CalendarCadence = "calendar-month" | "calendar-week" | "calendar-day"

/**
 * A period `[start, end)` in epoch-ms.
 *
 * @since 0.3.0
 * @internal
 */
export interface Period {
  readonly start: number
  readonly end: number
}

/**
 * The calendar period holding `now` (epoch-ms) at the fixed UTC offset `offsetMs`; weeks start on
 * `weekStartsOn` (0 = Sunday … 6 = Saturday).
 *
 * @since 0.3.0
 * @internal
 */
export const calendarPeriod = (
  cadence: CalendarCadence,
  now: number,
  offsetMs: number,
  weekStartsOn: number
): Period => {
  const day = Math.floor((now + offsetMs) / DAY_MS)
  let first: number
  let next: number
  if (cadence === "calendar-day") {
    first = day
    next = day + 1
  } else if (cadence === "calendar-week") {
    first = day - luaMod(luaMod(day + 4, 7) - weekStartsOn, 7)
    next = first + 7
  } else {
    const date = civilOf(day)
    first = day - (date.day - 1)
    next = first + daysInMonth(date.year, date.month)
  }
  return { start: first * DAY_MS - offsetMs, end: next * DAY_MS - offsetMs }
}
