/**
 * Token bucket, CONTRACT.md §5. The state is the (fractional) token count and the time it was last
 * brought current, exactly the Redis hash fields `t` and `l`.
 *
 * Expression order of a check (IEEE-754 doubles, in this order; the Lua script must do the same):
 *
 * ```
 * r       = refillPerSec / 1000                      -- tokens per ms
 * stored  = the stored t, or capacity when there is none (or it expired)
 * last    = the stored l, or now when there is none
 * elapsed = now - last;  if elapsed < 0 then elapsed = 0
 * tokens  = stored + elapsed * r;  if tokens > capacity then tokens = capacity
 * allow when tokens >= cost:
 *   newTokens = tokens - cost;  store t = newTokens, l = now (both with %.17g)
 *   remaining = max(0, floor(newTokens))
 *   resetAt   = now + ceil((capacity - newTokens) / r)
 *   ttl = ceil(capacity / r), at least 1;  the key expires at now + ttl
 * deny:
 *   remaining = max(0, floor(tokens))
 *   resetAt = now + ceil((capacity - tokens) / r);  retryAfterMs = ceil((cost - tokens) / r)
 * ```
 *
 * The reported limit is `capacity`.
 *
 * Fresh (`isFresh`): a bucket whose tokens at `now` reach `capacity` reads as no state (both give
 * `tokens = capacity`, the clamp being exact); refilling is monotone in time, so it stays full. That is
 * usually well before the key's expiry, which allows a refill from empty.
 *
 * Peek: `allowed` and `retryAfterMs` of a cost-1 check; `remaining` = floor(tokens) and `resetAt` as
 * the state stands (the denial formulas), consuming nothing.
 *
 * Forecast: `spendableNow` = floor(tokens / cost), exact (back-to-back checks refill nothing and each
 * subtraction of a whole cost is exact). `fullAt` is the first whole ms at which the bucket holds
 * `capacity` tokens, `nextReplenishAt` the first at which floor(tokens) has grown by one; both are `now`
 * when the bucket is full.
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"
import { allow, deny, firstInstant, live } from "./internal.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * The stored state: fractional tokens, the epoch-ms they were last brought current, and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly tokens: number
  readonly last: number
  readonly expiresAt: number
}

/**
 * The token-bucket parameters (the `tokenBucket` strategy of `Policy`, with or without its `kind`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly capacity: number
  readonly refillPerSec: number
}

/**
 * Builds the token-bucket engine for `options`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): RateEngine<State> => {
  const capacity = options.capacity
  const r = options.refillPerSec / 1000
  let ttl = Math.ceil(capacity / r)
  if (ttl < 1) ttl = 1

  /** The tokens held at `now`, refilled lazily from the stored state. */
  const tokensAt = (state: State | undefined, now: number): number => {
    const current = live(state, now)
    const stored = current === undefined ? capacity : current.tokens
    const last = current === undefined ? now : current.last
    let elapsed = now - last
    if (elapsed < 0) elapsed = 0
    const tokens = stored + elapsed * r
    return tokens > capacity ? capacity : tokens
  }

  const wholeTokens = (tokens: number): number => {
    const whole = Math.floor(tokens)
    return whole < 0 ? 0 : whole
  }

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const tokens = tokensAt(state, now)
    if (tokens >= cost) {
      const newTokens = tokens - cost
      return {
        decision: allow(capacity, wholeTokens(newTokens), now + Math.ceil((capacity - newTokens) / r)),
        state: { tokens: newTokens, last: now, expiresAt: now + ttl }
      }
    }
    return {
      decision: deny(
        capacity,
        wholeTokens(tokens),
        now + Math.ceil((capacity - tokens) / r),
        Math.ceil((cost - tokens) / r)
      ),
      state
    }
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const tokens = tokensAt(state, now)
    const resetAt = now + Math.ceil((capacity - tokens) / r)
    if (tokens >= 1) return allow(capacity, wholeTokens(tokens), resetAt)
    return deny(capacity, wholeTokens(tokens), resetAt, Math.ceil((1 - tokens) / r))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const tokens = tokensAt(state, now)
    // Back-to-back checks at one instant refill nothing and subtract a whole `cost` from a value below
    // 2^53 each time, which is exact, so the count is the exact quotient.
    let spendableNow = tokens >= cost ? Math.floor(tokens / cost) : 0
    while (spendableNow > 0 && spendableNow * cost > tokens) spendableNow--
    while ((spendableNow + 1) * cost <= tokens) spendableNow++
    if (tokens >= capacity) return { spendableNow, nextReplenishAt: now, fullAt: now }
    let refilledAt = now + Math.ceil((capacity - tokens) / r)
    // Refilling from the stored state can land a rounding error short of capacity: step past it.
    for (let guard = 0; guard < 4 && tokensAt(state, refilledAt) < capacity; guard++) refilledAt++
    const fullAt = firstInstant(now, refilledAt, (t) => tokensAt(state, t) >= capacity)
    const current = wholeTokens(tokens)
    const nextReplenishAt = firstInstant(now, fullAt, (t) => wholeTokens(tokensAt(state, t)) > current)
    return { spendableNow, nextReplenishAt, fullAt }
  }

  return {
    limit: capacity,
    check,
    peek,
    forecast,
    expiresAt: (state) => state.expiresAt,
    isFresh: (state, now) => tokensAt(state, now) >= capacity
  }
}
