/**
 * GCRA (generic cell rate algorithm), CONTRACT.md §5. The state is one number, the theoretical arrival
 * time (TAT), exactly what the Redis key holds as a string.
 *
 * Expression order of a check (every step one IEEE-754 double operation, in this order; the Lua script
 * must do the same, nothing is rounded in between):
 *
 * ```
 * T       = periodMs / limit
 * tau     = T * burst
 * stored  = the stored TAT, or now when there is none (or it expired)
 * tat     = stored < now ? now : stored            -- max(stored, now)
 * inc     = T * cost
 * newTat  = tat + inc
 * allowAt = newTat - tau
 * deny when now < allowAt:
 *   remaining = max(0, floor((tau - (tat - now)) / T))
 *   resetAt = ceil(tat);  retryAfterMs = ceil(allowAt - now)
 * otherwise store newTat (written with %.17g, so it round-trips exactly):
 *   remaining = max(0, floor((tau - (newTat - now)) / T))
 *   resetAt = ceil(newTat)
 *   px = ceil(newTat - now), at least 1;  the key expires at now + px
 * ```
 *
 * The reported limit is `burst`.
 *
 * Fresh (`isFresh`): a state whose TAT is at or before `now` (or that expired) reads as no state, since
 * every operation starts from max(tat, now) = now; later instants only move `now` further past it.
 *
 * Peek (a cost-1 check that consumes nothing): `allowed` and `retryAfterMs` are those of the cost-1 check;
 * `remaining` and `resetAt` describe the state as it stands (the denial formulas above), so an allowed
 * peek reports the units that could be taken now (at least 1, should rounding say 0).
 *
 * Forecast: `spendableNow` replays successive checks of `cost` at `now` (see
 * `FORECAST_SIMULATION_LIMIT`). Capacity is peek's `remaining`: `fullAt` is the first whole ms at which it
 * equals a fresh key's (at most ceil(tat)), `nextReplenishAt` the first at which it has grown by one; both
 * are `now` when the key already reads as fresh.
 *
 * @since 0.1.0
 */
import type { Decision, DecisionData } from "../Decision.js"
import { allow, deny, firstInstant, live } from "./internal.js"
import type { ForecastData, InPlaceEngine, RateEngine, Step } from "./types.js"

/**
 * The stored state: the theoretical arrival time (epoch-ms, fractional) and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly tat: number
  readonly expiresAt: number
}

/**
 * A GCRA state that its in-place check updates (`make(...).inPlace`): the Memory door's key tables keep
 * one per key, so a check there allocates no state. The pure `check` returns fresh ones, never touched
 * again. A class instance rather than an object literal: V8 watches each literal's allocation site, and
 * a key table filling up (every fresh state survives the next minor GC) can make it allocate all later
 * states straight into the old generation, where a 10k-key check loop ran up to 5× slower, depending
 * on when a GC happened to run. A constructor has no such site.
 *
 * @since 0.1.0
 * @internal
 */
export class Cell implements State {
  // `declare`d and set in the constructor: a class field (`tat: number`, or a parameter property) is
  // defined as `undefined` before the constructor runs, which leaves V8 holding each number in a
  // separate box that every write replaces (an allocation and a write barrier per update), where a field
  // first written with a number is kept as a double that an update overwrites in place.
  declare tat: number
  declare expiresAt: number
  constructor(tat: number, expiresAt: number) {
    this.tat = tat
    this.expiresAt = expiresAt
  }
}

/**
 * The GCRA parameters (the `gcra` strategy of `Policy`, with or without its `kind`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly limit: number
  readonly periodMs: number
  readonly burst: number
}

/**
 * Forecasts simulate successive checks one by one (bit-exact with what `check` would do) up to this many;
 * beyond it the count is the closed form `floor((tau - (tat - now)) / (T * cost))`, which can differ by
 * one from the float-accumulated sequence at a rounding boundary.
 *
 * @since 0.1.0
 * @category constants
 */
export const FORECAST_SIMULATION_LIMIT = 4096

/**
 * The GCRA engine: the pure functions, and the same check run in place on a `Cell`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Engine extends RateEngine<State> {
  readonly inPlace: InPlaceEngine<Cell, State>
}

/**
 * Builds the GCRA engine for `options`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Engine => {
  const burst = options.burst
  const T = options.periodMs / options.limit
  const tau = T * burst

  /** max(stored, now). */
  const atLeastNow = (stored: number, now: number): number => stored < now ? now : stored

  /** max(stored TAT or now, now). */
  const currentTat = (state: State | undefined, now: number): number => {
    const current = live(state, now)
    return atLeastNow(current === undefined ? now : current.tat, now)
  }

  /** The units left at `now` for a TAT of `tat` (the denial formula). */
  const unitsLeft = (tat: number, now: number): number => {
    const remaining = Math.floor((tau - (tat - now)) / T)
    return remaining < 0 ? 0 : remaining
  }

  /** A denied check's decision (the state is kept as it is). */
  const denial = (tat: number, now: number, allowAt: number): Decision =>
    deny(burst, unitsLeft(tat, now), Math.ceil(tat), Math.ceil(allowAt - now))

  // The one place the check's arithmetic lives: the pure `check` runs it on a copy of its input state.
  // The denial lives in its own function so the allow path, nearly every check's, stays small enough for
  // the JIT to inline it into a caller (the in-process doors' hot path).
  const checkInPlace = (cell: Cell, isLive: boolean, now: number, cost: number): Decision => {
    const tat = atLeastNow(isLive ? cell.tat : now, now)
    const inc = T * cost
    const newTat = tat + inc
    const allowAt = newTat - tau
    if (now < allowAt) return denial(tat, now, allowAt)
    const remaining = unitsLeft(newTat, now)
    let px = Math.ceil(newTat - now)
    if (px < 1) px = 1
    cell.tat = newTat
    cell.expiresAt = now + px
    return allow(burst, remaining, Math.ceil(newTat))
  }

  /** A cell holding no state (its fields are never read before a write). */
  const emptyCell = (): Cell => new Cell(Number.NaN, Number.NEGATIVE_INFINITY)

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const current = live(state, now)
    const cell = current === undefined ? emptyCell() : new Cell(current.tat, current.expiresAt)
    const decision = checkInPlace(cell, current !== undefined, now, cost)
    return { decision, state: decision.allowed ? cell : state }
  }

  /** Peek's `remaining` for a current TAT of `tat` (at least 1 when a cost-1 check would pass). */
  const peekUnits = (tat: number, now: number): number => {
    const remaining = unitsLeft(tat, now)
    const newTat = tat + T
    return remaining < 1 && !(now < newTat - tau) ? 1 : remaining
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const tat = currentTat(state, now)
    const newTat = tat + T
    const allowAt = newTat - tau
    const remaining = peekUnits(tat, now)
    if (now < allowAt) return deny(burst, remaining, Math.ceil(tat), Math.ceil(allowAt - now))
    return allow(burst, remaining, Math.ceil(tat))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const tat0 = currentTat(state, now)
    const inc = T * cost
    let spendableNow = 0
    let tat = tat0
    while (spendableNow < FORECAST_SIMULATION_LIMIT) {
      const newTat = tat + inc
      if (now < newTat - tau) break
      tat = newTat
      spendableNow++
    }
    if (spendableNow === FORECAST_SIMULATION_LIMIT) {
      const closed = Math.floor((tau - (tat0 - now)) / inc)
      if (closed > spendableNow) spendableNow = closed
    }
    // Capacity in whole units as peek reports it; "full" is what a fresh key reports.
    const full = peekUnits(now, now)
    const current = peekUnits(tat0, now)
    if (current >= full) return { spendableNow, nextReplenishAt: now, fullAt: now }
    const unitsAt = (t: number): number => peekUnits(tat0 > t ? tat0 : t, t)
    const fullAt = firstInstant(now, Math.ceil(tat0), (t) => unitsAt(t) >= full)
    const nextReplenishAt = firstInstant(now, fullAt, (t) => unitsAt(t) > current)
    return { spendableNow, nextReplenishAt, fullAt }
  }

  /** max(tat, now) is `now` (an empty cell's NaN TAT has its expiry at -∞). */
  const isFresh = (state: State, now: number): boolean => now > state.expiresAt || state.tat <= now

  return {
    limit: burst,
    check,
    peek,
    forecast,
    expiresAt: (state) => state.expiresAt,
    isFresh,
    inPlace: {
      emptyCell,
      checkInPlace,
      expiresAt: (cell) => cell.expiresAt,
      isFresh,
      stateOf: (cell) => cell,
      cellOf: (state) => new Cell(state.tat, state.expiresAt)
    }
  }
}
