/**
 * Fixed window, CONTRACT.md §5: `limit` units per epoch-aligned window of `windowMs`. The state is the
 * window start and its count, exactly the Redis hash fields `s` and `c`.
 *
 * Expression order of a check (all whole numbers; the Lua script must do the same):
 *
 * ```
 * start   = floor(now / windowMs) * windowMs
 * resetAt = start + windowMs
 * count   = the stored c when the stored s equals start (and the key is live), else 0
 * allow when count + cost <= limit:
 *   store s = start, c = count + cost
 *   remaining = limit - (count + cost)
 *   px = ceil(resetAt - now), at least 1;  the key expires at now + px
 * deny:
 *   remaining = max(0, limit - count);  retryAfterMs = ceil(resetAt - now)
 * ```
 *
 * The reported limit is `limit`; `resetAt` is always the end of the current window.
 *
 * Fresh (`isFresh`): a state of an earlier window (or expired) counts 0, as no state does.
 *
 * Peek: `allowed`/`retryAfterMs` of a cost-1 check, `remaining = max(0, limit - count)`.
 * Forecast: capacity returns all at once at the window's end, so `nextReplenishAt = fullAt = resetAt`
 * unless the current window is untouched (then both are `now`).
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"
import { allow, deny, live, wholeQuotient } from "./internal.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * The stored state: the window start (epoch-ms), the units counted in it, and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly start: number
  readonly count: number
  readonly expiresAt: number
}

/**
 * The fixed-window parameters (the `fixedWindow` strategy of `Policy`, with or without its `kind`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly limit: number
  readonly windowMs: number
}

/**
 * Builds the fixed-window engine for `options`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): RateEngine<State> => {
  const limit = options.limit
  const windowMs = options.windowMs

  const windowStart = (now: number): number => Math.floor(now / windowMs) * windowMs

  const countIn = (state: State | undefined, now: number, start: number): number => {
    const current = live(state, now)
    return current !== undefined && current.start === start ? current.count : 0
  }

  const left = (count: number): number => {
    const remaining = limit - count
    return remaining < 0 ? 0 : remaining
  }

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const start = windowStart(now)
    const resetAt = start + windowMs
    const count = countIn(state, now, start)
    if (count + cost <= limit) {
      const newCount = count + cost
      let px = Math.ceil(resetAt - now)
      if (px < 1) px = 1
      return {
        decision: allow(limit, limit - newCount, resetAt),
        state: { start, count: newCount, expiresAt: now + px }
      }
    }
    return { decision: deny(limit, left(count), resetAt, Math.ceil(resetAt - now)), state }
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const start = windowStart(now)
    const resetAt = start + windowMs
    const count = countIn(state, now, start)
    if (count + 1 <= limit) return allow(limit, left(count), resetAt)
    return deny(limit, left(count), resetAt, Math.ceil(resetAt - now))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const start = windowStart(now)
    const count = countIn(state, now, start)
    const spendableNow = count <= limit ? wholeQuotient(limit - count, cost) : 0
    if (count === 0) return { spendableNow, nextReplenishAt: now, fullAt: now }
    const resetAt = start + windowMs
    return { spendableNow, nextReplenishAt: resetAt, fullAt: resetAt }
  }

  return {
    limit,
    check,
    peek,
    forecast,
    expiresAt: (state) => state.expiresAt,
    isFresh: (state, now) => now > state.expiresAt || state.start < windowStart(now)
  }
}
