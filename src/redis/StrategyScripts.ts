/**
 * Which vendored scripts serve a rate strategy, and the ARGV values its parameters fix. A strategy runs
 * the scripts named after its kind with its own fields as ARGV, except a quota, which runs the scripts the
 * ThrottleKit core runs for it: a `rolling` quota the `slidingWindow` scripts (`windowMs` = `periodMs`),
 * any other the `quota` scripts with the core's ARGV (`mode` 1 = calendar-month, 2 = calendar-week,
 * 3 = calendar-day, 4 = fixed; `periodMs` and `anchor` 0 unless fixed; `offsetMs` = `offsetMinutes` ×
 * 60000; `weekStartsOn` 1 unless calendar-week).
 *
 * @since 0.3.0
 * @internal
 */
import type { Strategy } from "../Policy.js"
import type { Named } from "./Scripts.js"

/**
 * The scripts of a strategy (the manifest's `strategy` name) and the ARGV values its parameters fix.
 *
 * @since 0.3.0
 * @internal
 */
export interface StrategyScripts {
  readonly strategy: string
  readonly params: Named
}

/**
 * The core's `mode` ARGV of each quota cadence its `quota` script serves.
 *
 * @since 0.3.0
 * @internal
 */
export const QUOTA_MODE = { "calendar-month": 1, "calendar-week": 2, "calendar-day": 3, fixed: 4 } as const

/**
 * The scripts serving `strategy`, with their fixed ARGV values.
 *
 * @since 0.3.0
 * @internal
 */
export const scriptsOf = (strategy: Strategy): StrategyScripts => {
  if (strategy.kind !== "quota") {
    const { kind, ...params } = strategy
    return { strategy: kind, params }
  }
  const limit = strategy.limit
  switch (strategy.resetCadence) {
    case "rolling":
      return {
        strategy: "slidingWindow",
        params: { limit, windowMs: strategy.periodMs, buckets: strategy.buckets }
      }
    case "fixed":
      return {
        strategy: "quota",
        params: {
          limit,
          mode: QUOTA_MODE.fixed,
          periodMs: strategy.periodMs,
          anchor: strategy.anchor,
          offsetMs: 0,
          weekStartsOn: 1
        }
      }
    case "calendar-week":
      return {
        strategy: "quota",
        params: {
          limit,
          mode: QUOTA_MODE["calendar-week"],
          periodMs: 0,
          anchor: 0,
          offsetMs: strategy.offsetMinutes * 60_000,
          weekStartsOn: strategy.weekStartsOn
        }
      }
    default:
      return {
        strategy: "quota",
        params: {
          limit,
          mode: QUOTA_MODE[strategy.resetCadence],
          periodMs: 0,
          anchor: 0,
          offsetMs: strategy.offsetMinutes * 60_000,
          weekStartsOn: 1
        }
      }
  }
}
