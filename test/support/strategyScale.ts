/**
 * The time scale of a rate strategy, for tests that move a clock to where behaviour changes.
 */
import type { Strategy } from "../../src/Policy.js"

/** Where a strategy's behaviour changes: its window, bucket width, token tick or emission interval (ms). */
export const timeScaleOf = (strategy: Strategy): number => {
  switch (strategy.kind) {
    case "gcra":
      return strategy.periodMs / strategy.limit
    case "tokenBucket":
      return 1000 / strategy.refillPerSec
    case "slidingWindow":
      return strategy.windowMs / strategy.buckets
    default:
      return strategy.windowMs
  }
}
