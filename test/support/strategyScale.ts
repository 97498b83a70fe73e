/**
 * The time scale of a rate strategy, for tests that move a clock to where behaviour changes.
 */
import { quotaPeriodMs, type Strategy } from "../../src/Policy.js"

/**
 * Where a strategy's behaviour changes: its window, bucket width, token tick or emission interval (ms); a
 * quota's period (its longest, for calendar cadences, whose boundaries are not multiples of it) or, when
 * rolling, its bucket width.
 */
export const timeScaleOf = (strategy: Strategy): number => {
  switch (strategy.kind) {
    case "gcra":
      return strategy.periodMs / strategy.limit
    case "tokenBucket":
      return 1000 / strategy.refillPerSec
    case "slidingWindow":
      return strategy.windowMs / strategy.buckets
    case "quota":
      return strategy.resetCadence === "rolling" ? strategy.periodMs / strategy.buckets : quotaPeriodMs(strategy)
    default:
      return strategy.windowMs
  }
}
