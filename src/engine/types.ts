/**
 * The shapes shared by the pure engine functions. Every function is a pure function of its inputs and
 * `now` (epoch-ms); a denial returns the input state unchanged (the same reference).
 *
 * @since 0.1.0
 */
import type { Decision, DecisionData } from "../Decision.js"

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
 * `expiresAt` is when the stored state becomes equivalent to no state (the Redis key's expiry);
 * `isFresh` says whether it already is, which can come earlier (a token bucket refilled to capacity
 * before its key's TTL).
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
  /**
   * Whether `state` answers exactly as no state (a never-seen key) at `now` and at every later instant:
   * every check, peek and forecast decides as on no state, and a check leaves a state that decides as
   * the one it would write on no state. Once true it stays true until the state is written again (time
   * moves forward). True for every expired state. What a bounded key table may forget without changing
   * a decision.
   */
  readonly isFresh: (state: S, now: number) => boolean
}

/**
 * A rate strategy's consuming check run on state kept in place: a key holds one mutable cell for its
 * whole life, and an allowed check writes the new state into it, so the check allocates nothing but its
 * decision (the key tables of the Memory door hold cells). Its arithmetic is the strategy's one: for
 * the same state, time and cost, `checkInPlace` decides what `RateEngine.check` decides and leaves the
 * cell holding the state `check` returns.
 *
 * @since 0.1.0
 * @category models
 */
export interface InPlaceEngine<C, S> {
  /** A cell holding no state yet (a new key's, until its first allowed check writes it). */
  readonly emptyCell: () => C
  /**
   * Consumes `cost` units of the cell's state at `now` (no state when `live` is false: a new key, or one
   * whose state expired). An allowed check overwrites the cell with the new state; a denied one leaves
   * it untouched. The decision is a `Decision` already (no door copies it).
   */
  readonly checkInPlace: (cell: C, live: boolean, now: number, cost: number) => Decision
  /** When the cell's state expires (epoch-ms, as `RateEngine.expiresAt`); past it the cell reads as no state. */
  readonly expiresAt: (cell: C, now: number) => number
  /** Whether the cell answers as no state at `now` and later (`RateEngine.isFresh`; an empty cell does). */
  readonly isFresh: (cell: C, now: number) => boolean
  /** The cell's state as the strategy's pure functions take it (for peek and forecast). */
  readonly stateOf: (cell: C) => S | undefined
  /** A new cell holding `state` (an admin write: a reward's state). @since 0.3.0 */
  readonly cellOf: (state: S) => C
}
