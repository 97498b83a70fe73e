/**
 * Small arithmetic helpers shared by the engine modules. Nothing here rounds engine state; these only
 * build decisions, decide whether a stored state is still live, and count whole quotients exactly.
 *
 * @since 0.1.0
 * @internal
 */
import { type Decision, decisionOf, fromData } from "../Decision.js"
import type { InPlaceEngine, RateEngine } from "./types.js"

/**
 * Anything stored under a key that expires: `expiresAt` is the epoch-ms of the key's expiry.
 *
 * @since 0.1.0
 * @internal
 */
export interface Expiring {
  readonly expiresAt: number
}

/**
 * The state if it is still live at `now`, else `undefined`. Redis keeps a key through its expiry instant
 * and drops it after (a key is expired when the clock is strictly past it), so a state is live while
 * `now <= expiresAt`.
 *
 * @since 0.1.0
 * @internal
 */
export const live = <S extends Expiring>(state: S | undefined, now: number): S | undefined =>
  state !== undefined && now <= state.expiresAt ? state : undefined

/**
 * Lua 5.1's `a % n`, defined as `a - floor(a / n) * n` (the result takes the sign of `n`).
 *
 * @since 0.1.0
 * @internal
 */
export const luaMod = (a: number, n: number): number => a - Math.floor(a / n) * n

/**
 * An allow decision (`retryAfterMs` is 0).
 *
 * @since 0.1.0
 * @internal
 */
export const allow = (limit: number, remaining: number, resetAt: number): Decision =>
  decisionOf(true, limit, remaining, resetAt, 0)

/**
 * A denial decision.
 *
 * @since 0.1.0
 * @internal
 */
export const deny = (limit: number, remaining: number, resetAt: number, retryAfterMs: number): Decision =>
  decisionOf(false, limit, remaining, resetAt, retryAfterMs)

/**
 * `floor(a / b)` for whole numbers `a >= 0`, `b >= 1`, corrected where the float quotient rounds across
 * an integer.
 *
 * @since 0.1.0
 * @internal
 */
export const wholeQuotient = (a: number, b: number): number => {
  if (a <= 0) return 0
  let q = Math.floor(a / b)
  while (q > 0 && q * b > a) q--
  while ((q + 1) * b <= a) q++
  return q
}

/**
 * `ceil(a / b)` for whole numbers `a >= 0`, `b >= 1`, corrected like {@link wholeQuotient}.
 *
 * @since 0.1.0
 * @internal
 */
export const ceilQuotient = (a: number, b: number): number => {
  if (a <= 0) return 0
  let q = Math.ceil(a / b)
  while (q > 1 && (q - 1) * b >= a) q--
  while (q * b < a) q++
  return q
}

/**
 * The earliest whole-ms instant `t` in `(from, to]` (stepping from `from` by whole ms) at which `reached`
 * holds, found by bisection; `reached` must be monotone (false, then true). Returns `to` when `reached`
 * holds nowhere earlier (or not even at `to`, which callers treat as the bound).
 *
 * @since 0.1.0
 * @internal
 */
export const firstInstant = (from: number, to: number, reached: (t: number) => boolean): number => {
  let lo = 0 // offset known not to reach (from itself)
  let hi = Math.ceil(to - from) // offset assumed to reach
  if (hi <= 0) return to
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2)
    if (reached(from + mid)) hi = mid
    else lo = mid
  }
  const t = from + hi
  return t < to ? t : to
}

/**
 * A key's state held by reference, for a strategy whose state is replaced whole on every write: the
 * in-place check of {@link boxed} swaps the box's content.
 *
 * @since 0.1.0
 * @internal
 */
export class Box<S> {
  constructor(public state: S | undefined) {}
}

/**
 * The in-place check of any pure engine: each cell is a {@link Box} whose state an allowed check
 * replaces with the state `engine.check` returned. (A strategy with its own in-place arithmetic, like
 * GCRA's, writes its fields instead and allocates no state at all.)
 *
 * @since 0.1.0
 * @internal
 */
export const boxed = <S>(engine: RateEngine<S>): InPlaceEngine<Box<S>, S> => ({
  emptyCell: () => new Box<S>(undefined),
  checkInPlace: (box, live, now, cost) => {
    const step = engine.check(live ? box.state : undefined, now, cost)
    if (step.decision.allowed) box.state = step.state
    return fromData(step.decision)
  },
  // A box an allowed check left empty holds nothing, as if expired.
  expiresAt: (box, now) => box.state === undefined ? Number.NEGATIVE_INFINITY : engine.expiresAt(box.state, now),
  isFresh: (box, now) => box.state === undefined || engine.isFresh(box.state, now),
  stateOf: (box) => box.state,
  cellOf: (state) => new Box(state)
})
