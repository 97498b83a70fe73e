/**
 * Token budget, the cost axis (`debit`), CONTRACT.md §5: `budget` tokens per key per epoch-aligned window
 * of `windowMs`. The state mirrors a fixed window: the window start and the tokens spent in it.
 *
 * Expression order of a debit (all whole numbers):
 *
 * ```
 * start   = floor(now / windowMs) * windowMs
 * resetAt = start + windowMs
 * spent   = the stored spent when the stored start equals start (and the key is live), else 0
 * allow when spent < budget (the crossing debit counts in full):
 *   store start, spent + tokens
 *   remaining = max(0, budget - (spent + tokens))
 *   px = ceil(resetAt - now), at least 1;  the key expires at now + px
 * deny:
 *   remaining = max(0, budget - spent);  retryAfterMs = ceil(resetAt - now)
 * ```
 *
 * The reported limit is `budget`; `resetAt` is always the window's end.
 *
 * Fresh (`isFresh`): a state of an earlier window (or expired) has spent 0, as no state has.
 *
 * Peek: the decision a 1-token debit would get, with `remaining = max(0, budget - spent)` (nothing is
 * debited): allowed iff remaining > 0, limit = budget, resetAt = the window's end, retryAfterMs = 0 when
 * allowed, else ceil(resetAt - now). A refused debit's decision is exactly the peek's.
 *
 * Forecast (for debits of `tokens`): `spendableNow` = how many debits of `tokens` in a row are admitted
 * now (each one is while budget remains, so the last may cross): ceil((budget - spent) / tokens), 0 when
 * spent ≥ budget. The whole budget returns at once at the window's end, so `nextReplenishAt = fullAt =
 * resetAt`, unless nothing is spent in the current window (then both are `now`: already full).
 *
 * The Redis scripts `tokenBudget.peek` / `tokenBudget.forecast` (vendor/lua, read-only) mirror both.
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"
import { allow, ceilQuotient, deny, live } from "./internal.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * The stored state: the window start (epoch-ms), the tokens spent in it, and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly start: number
  readonly spent: number
  readonly expiresAt: number
}

/**
 * The budget parameters (a `meter` policy's `budget` and `windowMs`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly budget: number
  readonly windowMs: number
}

/**
 * The budget engine: a `RateEngine` whose `check` is the debit (cost = tokens), plus `debit` itself.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetEngine extends RateEngine<State> {
  readonly debit: (state: State | undefined, now: number, tokens: number) => Step<State>
}

const windowStart = (options: Options, now: number): number => Math.floor(now / options.windowMs) * options.windowMs

const spentIn = (state: State | undefined, now: number, start: number): number => {
  const current = live(state, now)
  return current !== undefined && current.start === start ? current.spent : 0
}

const left = (options: Options, spent: number): number => {
  const remaining = options.budget - spent
  return remaining < 0 ? 0 : remaining
}

/**
 * Debits `tokens` at `now`. A denial returns the input state (nothing written).
 *
 * @since 0.1.0
 * @category operations
 */
export const debit = (options: Options, state: State | undefined, now: number, tokens: number): Step<State> => {
  const start = windowStart(options, now)
  const resetAt = start + options.windowMs
  const spent = spentIn(state, now, start)
  if (spent < options.budget) {
    const newSpent = spent + tokens
    let px = Math.ceil(resetAt - now)
    if (px < 1) px = 1
    return {
      decision: allow(options.budget, left(options, newSpent), resetAt),
      state: { start, spent: newSpent, expiresAt: now + px }
    }
  }
  return { decision: deny(options.budget, left(options, spent), resetAt, Math.ceil(resetAt - now)), state }
}

/**
 * The decision a 1-token debit would get at `now`, with `remaining` = the tokens left (nothing debited).
 *
 * @since 0.1.0
 * @category operations
 */
export const peek = (options: Options, state: State | undefined, now: number): DecisionData => {
  const start = windowStart(options, now)
  const resetAt = start + options.windowMs
  const spent = spentIn(state, now, start)
  if (spent < options.budget) return allow(options.budget, left(options, spent), resetAt)
  return deny(options.budget, left(options, spent), resetAt, Math.ceil(resetAt - now))
}

/**
 * How many debits of `tokens` in a row are admitted at `now`, and when the budget returns.
 *
 * @since 0.1.0
 * @category operations
 */
export const forecast = (options: Options, state: State | undefined, now: number, tokens: number): ForecastData => {
  const start = windowStart(options, now)
  const spent = spentIn(state, now, start)
  // Debit k (from 0) is admitted iff spent + k * tokens < budget: ceil((budget - spent) / tokens) of them.
  const spendableNow = spent < options.budget ? ceilQuotient(options.budget - spent, tokens) : 0
  if (spent === 0) return { spendableNow, nextReplenishAt: now, fullAt: now }
  const resetAt = start + options.windowMs
  return { spendableNow, nextReplenishAt: resetAt, fullAt: resetAt }
}

/**
 * When the stored budget state's key expires (epoch-ms); the state is live while `now <= expiresAt`.
 *
 * @since 0.1.0
 * @category operations
 */
export const expiresAt = (state: State, _now?: number): number => state.expiresAt

/**
 * Whether `state` reads as no state at `now` and later: it counts an earlier window (or expired).
 *
 * @since 0.2.0
 * @category operations
 */
export const isFresh = (options: Options, state: State, now: number): boolean =>
  now > state.expiresAt || state.start < windowStart(options, now)

/**
 * The budget engine bound to `options` (`check` and `debit` are the same function).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): BudgetEngine => {
  const debitBound = (state: State | undefined, now: number, tokens: number): Step<State> =>
    debit(options, state, now, tokens)
  return {
    limit: options.budget,
    check: debitBound,
    debit: debitBound,
    peek: (state, now) => peek(options, state, now),
    forecast: (state, now, tokens) => forecast(options, state, now, tokens),
    expiresAt,
    isFresh: (state, now) => isFresh(options, state, now)
  }
}
