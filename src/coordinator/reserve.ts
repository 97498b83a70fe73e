/**
 * The pure arithmetic of a windowed global-budget reservation: "take up to `wants` units of this key's
 * per-window budget, now". It is the strategy's own check with a partial grant, so the state it leaves is
 * exactly the state a plain check of the same strategy leaves (the fixed window's `s`/`c` hash, the
 * sliding window's bucket ring) and both can share one key.
 *
 * - fixedWindow: `granted = min(wants, limit - count)`; the grant expires at the end of the window.
 * - slidingWindow: `granted = min(wants, floor(limit - estimate))`, added to the current bucket; the grant
 *   expires at the end of the current bucket (tick). Credits spent before that instant fall in the tick
 *   that counted them, so the sliding estimate's bound holds for leased units too.
 *
 * `expiresAt` is always later than `now` (a sliding tick end that float rounding puts on `now` becomes
 * `now + 1`), so a window-coupled holder never receives credits that are already dead. A refusal
 * (`granted = 0`) writes nothing.
 *
 * The Lua scripts `fixedWindow.reserve` / `slidingWindow.reserve` compute the same function.
 *
 * @since 0.1.0
 */
import * as FixedWindowEngine from "../engine/fixedWindow.js"
import * as SlidingWindowEngine from "../engine/slidingWindow.js"
import type { RateEngine } from "../engine/types.js"
import type { FixedWindow, SlidingWindow } from "../Policy.js"

/**
 * A strategy whose budget can be reserved: one with a window boundary.
 *
 * @since 0.1.0
 * @category models
 */
export type WindowedStrategy = typeof FixedWindow.Type | typeof SlidingWindow.Type

/**
 * What a reservation grants: `granted` units (0 to `wants`; 0 is a refusal), valid until `expiresAt`
 * (epoch-ms, by the clock that decided), out of `limit` units per window.
 *
 * @since 0.1.0
 * @category models
 */
export interface Grant {
  readonly granted: number
  readonly expiresAt: number
  readonly limit: number
}

/**
 * The result of one reservation step: the grant and the state to store (the input state when nothing was
 * granted).
 *
 * @since 0.1.0
 * @category models
 */
export interface ReserveStep<S> {
  readonly grant: Grant
  readonly state: S | undefined
}

/**
 * The reservation function of one strategy, over its engine's opaque state.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reserver<S> {
  readonly limit: number
  readonly reserve: (state: S | undefined, now: number, wants: number) => ReserveStep<S>
  /** When a stored state is equivalent to no state (the key's expiry). */
  readonly expiresAt: (state: S, now: number) => number
}

/**
 * True when `strategy` has a window boundary and so can back a reservation.
 *
 * @since 0.1.0
 * @category guards
 */
export const isWindowed = (strategy: { readonly kind: string }): strategy is WindowedStrategy =>
  strategy.kind === "fixedWindow" || strategy.kind === "slidingWindow"

/** Grants what the engine's peek says is left (capped at `wants`) by checking exactly that many. */
const grantFrom = <S>(
  engine: RateEngine<S>,
  state: S | undefined,
  now: number,
  wants: number,
  expiresAt: number
): ReserveStep<S> => {
  const left = engine.peek(state, now).remaining
  const granted = left < wants ? left : wants
  if (granted > 0) {
    const step = engine.check(state, now, granted)
    // The peek and the check read the same state at the same instant, so the check admits; the guard
    // keeps a refusal a refusal should float rounding ever disagree.
    if (step.decision.allowed) return { grant: { granted, expiresAt, limit: engine.limit }, state: step.state }
  }
  return { grant: { granted: 0, expiresAt, limit: engine.limit }, state }
}

const fixedWindowReserver = (strategy: typeof FixedWindow.Type): Reserver<FixedWindowEngine.State> => {
  const engine = FixedWindowEngine.make(strategy)
  const windowMs = strategy.windowMs
  return {
    limit: engine.limit,
    reserve: (state, now, wants) =>
      grantFrom(engine, state, now, wants, Math.floor(now / windowMs) * windowMs + windowMs),
    expiresAt: engine.expiresAt
  }
}

const slidingWindowReserver = (strategy: typeof SlidingWindow.Type): Reserver<SlidingWindowEngine.State> => {
  const engine = SlidingWindowEngine.make(strategy)
  const tick = strategy.windowMs / strategy.buckets
  const tickEnd = (now: number): number => {
    const end = Math.ceil((Math.floor(now / tick) + 1) * tick)
    // Float rounding can put the computed end on `now` itself; a grant must outlive the instant it is made.
    return end > now ? end : now + 1
  }
  return {
    limit: engine.limit,
    reserve: (state, now, wants) => grantFrom(engine, state, now, wants, tickEnd(now)),
    expiresAt: engine.expiresAt
  }
}

/**
 * The reserver of a windowed strategy (its state type erased: a store keeps states opaquely and gives
 * each reserver only the states it returned).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (strategy: WindowedStrategy): Reserver<unknown> =>
  strategy.kind === "fixedWindow"
    ? fixedWindowReserver(strategy) as unknown as Reserver<unknown>
    : slidingWindowReserver(strategy) as unknown as Reserver<unknown>
