/**
 * The in-process engine: pure functions of (state, now) for every rate strategy and the token budget,
 * plus the lease spender and the concurrency guard (a `rolling` quota runs the sliding window's engine,
 * every other quota its own). The memory backend runs these directly; the Redis scripts compute the same
 * arithmetic (each module documents its exact expression order).
 *
 * @since 0.1.0
 */
import type { Strategy } from "../Policy.js"
import * as fixedWindow from "./fixedWindow.js"
import * as gcra from "./gcra.js"
import * as quota from "./quota.js"
import * as slidingWindow from "./slidingWindow.js"
import * as slidingWindowLog from "./slidingWindowLog.js"
import * as tokenBucket from "./tokenBucket.js"
import type { RateEngine } from "./types.js"

export * as concurrency from "./concurrency.js"
export * as fixedWindow from "./fixedWindow.js"
export * as gcra from "./gcra.js"
export * as leaseSpender from "./leaseSpender.js"
export * as quota from "./quota.js"
export * as slidingWindow from "./slidingWindow.js"
export * as slidingWindowLog from "./slidingWindowLog.js"
export * as tokenBucket from "./tokenBucket.js"
export * as tokenBudget from "./tokenBudget.js"
export type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * The state of any rate strategy (what `rateEngine`'s opaque states are).
 *
 * @since 0.1.0
 * @category models
 */
export type RateState =
  | gcra.State
  | tokenBucket.State
  | fixedWindow.State
  | slidingWindow.State
  | slidingWindowLog.State
  | quota.State

/**
 * The engine of a strategy, with its state type erased (a backend stores states opaquely). Its functions
 * must only be given states this same engine returned (or `undefined`); a backend keeps one engine per
 * policy, so that holds. The states are `RateState`s; use the strategy modules for typed access.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rateEngine = (strategy: Strategy): RateEngine<unknown> => {
  switch (strategy.kind) {
    case "gcra":
      return widen(gcra.make(strategy))
    case "tokenBucket":
      return widen(tokenBucket.make(strategy))
    case "fixedWindow":
      return widen(fixedWindow.make(strategy))
    case "slidingWindow":
      return widen(slidingWindow.make(strategy))
    case "slidingWindowLog":
      return widen(slidingWindowLog.make(strategy))
    case "quota":
      return strategy.resetCadence === "rolling"
        ? widen(slidingWindow.make(quota.slidingWindowOptions(strategy)))
        : widen(quota.make(strategy))
  }
}

/**
 * Forgets which state type an engine takes (function parameters are contravariant, so this needs a cast;
 * see `rateEngine` for why it is sound).
 */
const widen = <S extends RateState>(engine: RateEngine<S>): RateEngine<unknown> =>
  engine as unknown as RateEngine<unknown>
