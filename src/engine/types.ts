/**
 * The shapes shared by the pure engine functions. Every function is a pure function of its inputs and
 * `now` (epoch-ms); a denial returns the input state unchanged (the same reference).
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"

/**
 * A forecast as plain data.
 *
 * @since 0.1.0
 * @category models
 */
export interface ForecastData {
  readonly spendableNow: number
  readonly nextReplenishAt: number
  readonly fullAt: number
}

/**
 * The result of a consuming step: the decision and the state to store. `state` is the very input state
 * when nothing was written (a denial).
 *
 * @since 0.1.0
 * @category models
 */
export interface Step<S> {
  readonly decision: DecisionData
  readonly state: S | undefined
}

/**
 * A rate strategy as three pure functions of (state, now). `undefined` state means "no key" (fresh).
 * `expiresAt` is when the stored state becomes equivalent to no state (the Redis key's expiry).
 *
 * @since 0.1.0
 * @category models
 */
export interface RateEngine<S> {
  readonly limit: number
  readonly check: (state: S | undefined, now: number, cost: number) => Step<S>
  readonly peek: (state: S | undefined, now: number) => DecisionData
  readonly forecast: (state: S | undefined, now: number, cost: number) => ForecastData
  readonly expiresAt: (state: S, now: number) => number
}
