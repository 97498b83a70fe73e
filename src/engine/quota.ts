/**
 * Quota: `limit` units per billing period, the ThrottleKit core's `quota` strategy. The period is the
 * calendar month, week or day holding `now` at a fixed UTC offset (`calendar.ts`), or, for `fixed`, the
 * `periodMs`-long period counted from `anchor`. Within its period a quota counts like a fixed window: the
 * state is the period start and its count, exactly the Redis hash fields `s` and `c` of the `quota`
 * scripts (and of the core's). The `rolling` cadence is a sliding window (`slidingWindowOptions`), with
 * the sliding window's state and scripts.
 *
 * Expression order of a check (all whole numbers; the Lua script must do the same):
 *
 * ```
 * [start, end) = the period holding now:
 *   fixed:      start = anchor + floor((now - anchor) / periodMs) * periodMs;  end = start + periodMs
 *   calendar-*: see calendar.ts, with offsetMs = offsetMinutes * 60000
 * resetAt = end
 * count   = the stored c when the stored s equals start (and the key is live), else 0
 * allow when count + cost <= limit:
 *   store s = start, c = count + cost
 *   remaining = limit - (count + cost)
 *   px = ceil(end - now), at least 1;  the key expires at now + px
 * deny:
 *   remaining = max(0, limit - count);  retryAfterMs = ceil(end - now)
 * ```
 *
 * The reported limit is `limit`; `resetAt` is always the end of the current period (the true next 1st of
 * the month, leap years included).
 *
 * Fresh (`isFresh`): a state of an earlier period (or expired) counts 0, as no state does.
 *
 * Peek: `allowed`/`retryAfterMs` of a cost-1 check, `remaining = max(0, limit - count)`.
 * Forecast (the core has none; the same as a fixed window's): capacity returns all at once at the end of
 * the period, so `nextReplenishAt = fullAt = resetAt` unless the current period is untouched (then both
 * are `now`).
 *
 * @since 0.3.0
 */
import type { DecisionData } from "../Decision.js"
import type { DailyQuota, FixedQuota, MonthlyQuota, RollingQuota, WeeklyQuota } from "../Policy.js"
import { calendarPeriod, type Period } from "./calendar.js"
import { allow, deny, live, wholeQuotient } from "./internal.js"
import type * as SlidingWindow from "./slidingWindow.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * The stored state: the period start (epoch-ms), the units counted in it, and the key's expiry.
 *
 * @since 0.3.0
 * @category models
 */
export interface State {
  readonly start: number
  readonly count: number
  readonly expiresAt: number
}

type Fields<A> = Omit<A, "kind">

/**
 * The parameters of a quota counted per period (any cadence but `rolling`), with or without its `kind`.
 *
 * @since 0.3.0
 * @category models
 */
export type Options =
  | Fields<typeof MonthlyQuota.Type>
  | Fields<typeof WeeklyQuota.Type>
  | Fields<typeof DailyQuota.Type>
  | Fields<typeof FixedQuota.Type>

/**
 * The sliding window a `rolling` quota is: `limit` units over the trailing `periodMs`, in `buckets`.
 *
 * @since 0.3.0
 * @category utils
 */
export const slidingWindowOptions = (quota: Fields<typeof RollingQuota.Type>): SlidingWindow.Options => ({
  limit: quota.limit,
  windowMs: quota.periodMs,
  buckets: quota.buckets
})

/**
 * The period function of `options`: `now` → the period `[start, end)` holding it.
 *
 * @since 0.3.0
 * @category utils
 */
export const periodOf = (options: Options): (now: number) => Period => {
  if (options.resetCadence === "fixed") {
    const { anchor, periodMs } = options
    return (now) => {
      const start = anchor + Math.floor((now - anchor) / periodMs) * periodMs
      return { start, end: start + periodMs }
    }
  }
  const cadence = options.resetCadence
  const offsetMs = options.offsetMinutes * 60_000
  const weekStartsOn = options.resetCadence === "calendar-week" ? options.weekStartsOn : 1
  return (now) => calendarPeriod(cadence, now, offsetMs, weekStartsOn)
}

/**
 * Builds the engine of a quota counted per period (any cadence but `rolling`).
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: Options): RateEngine<State> => {
  const limit = options.limit
  const compute = periodOf(options)
  // Periods tile the timeline, so the last one computed answers every instant inside it.
  let last: Period = compute(0)
  const period = (now: number): Period => {
    if (now >= last.start && now < last.end) return last
    last = compute(now)
    return last
  }

  const countIn = (state: State | undefined, now: number, start: number): number => {
    const current = live(state, now)
    return current !== undefined && current.start === start ? current.count : 0
  }

  const left = (count: number): number => {
    const remaining = limit - count
    return remaining < 0 ? 0 : remaining
  }

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const { end, start } = period(now)
    const count = countIn(state, now, start)
    if (count + cost <= limit) {
      const newCount = count + cost
      let px = Math.ceil(end - now)
      if (px < 1) px = 1
      return { decision: allow(limit, limit - newCount, end), state: { start, count: newCount, expiresAt: now + px } }
    }
    return { decision: deny(limit, left(count), end, Math.ceil(end - now)), state }
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const { end, start } = period(now)
    const count = countIn(state, now, start)
    if (count + 1 <= limit) return allow(limit, left(count), end)
    return deny(limit, left(count), end, Math.ceil(end - now))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const { end, start } = period(now)
    const count = countIn(state, now, start)
    const spendableNow = count <= limit ? wholeQuotient(limit - count, cost) : 0
    if (count === 0) return { spendableNow, nextReplenishAt: now, fullAt: now }
    return { spendableNow, nextReplenishAt: end, fullAt: end }
  }

  return {
    limit,
    check,
    peek,
    forecast,
    expiresAt: (state) => state.expiresAt,
    isFresh: (state, now) => now > state.expiresAt || state.start < period(now).start
  }
}
