/**
 * Rewards: giving units back to a key, strategy by strategy, as a pure function of a live state (one that
 * does not read fresh) and time. The counterpart of a penalty, which needs no function of its own: a
 * penalty is a check of the units that are left (at most), so it writes exactly what a check would.
 *
 * How each strategy gives `units` back (never past a fresh key's capacity: a state that would reach it
 * reads as no state, `undefined`):
 * - gcra: the TAT moves back by `units × T` (T = periodMs / limit), never before `now`;
 * - tokenBucket: `units` tokens are added to the tokens held at `now` (refilled), at most `capacity`;
 * - fixedWindow, quota (per period) and the token budget: the period's count goes down by `units`;
 * - slidingWindow: `units` are taken off the counted ticks, newest tick first (so what is left still
 *   ages out no later than before);
 * - slidingWindowLog: the `units` newest entries of the window are removed.
 *
 * The Lua admin scripts (`vendor/lua/src/*.reward.lua`) compute the same functions on the stored state.
 *
 * @since 0.3.0
 * @internal
 */
import type { Strategy } from "../Policy.js"
import { luaMod } from "./internal.js"
import * as quota from "./quota.js"
import type * as SlidingWindow from "./slidingWindow.js"
import type * as SlidingWindowLog from "./slidingWindowLog.js"
import type * as TokenBucket from "./tokenBucket.js"

/**
 * Gives `units` (a whole number ≥ 1) back to a live `state` at `now`: the new state, or `undefined` when
 * the key now reads as fresh.
 *
 * @since 0.3.0
 * @internal
 */
export type Reward = (state: unknown, now: number, units: number) => unknown

/** A counting state: a period's start, its count (or tokens spent) and the key's expiry. */
interface Counted {
  readonly start: number
  readonly count?: number
  readonly spent?: number
  readonly expiresAt: number
}

/** The count of a period (or a budget's spent tokens) goes down by `units`; 0 reads fresh. */
const countDown: Reward = (state, _now, units) => {
  const counted = state as Counted
  if (counted.spent !== undefined) {
    const spent = counted.spent - units
    return spent <= 0 ? undefined : { ...counted, spent }
  }
  const count = (counted.count ?? 0) - units
  return count <= 0 ? undefined : { ...counted, count }
}

/** GCRA: the TAT moves back by units × T, not before now (a TAT at or before now reads fresh). */
const gcraReward = (periodMs: number, limit: number): Reward => {
  const T = periodMs / limit
  return (state, now, units) => {
    const { tat } = state as { readonly tat: number }
    const newTat = tat - T * units
    if (newTat <= now) return undefined
    let px = Math.ceil(newTat - now)
    if (px < 1) px = 1
    return { tat: newTat, expiresAt: now + px }
  }
}

/** Token bucket: the tokens held now plus units, at most capacity (a full bucket reads fresh). */
const tokenBucketReward = (capacity: number, refillPerSec: number): Reward => {
  const r = refillPerSec / 1000
  let ttl = Math.ceil(capacity / r)
  if (ttl < 1) ttl = 1
  return (state, now, units) => {
    const current = state as TokenBucket.State
    const elapsed = now - current.last
    const refilled = current.tokens + (elapsed > 0 ? elapsed : 0) * r
    const tokens = refilled + units
    return tokens >= capacity ? undefined : { tokens, last: now, expiresAt: now + ttl }
  }
}

/** Sliding window: units come off the ticks of the window, newest first. */
const slidingWindowReward = (windowMs: number, buckets: number): Reward => {
  const slotCount = buckets + 1
  const w = windowMs / buckets
  return (state, now, units) => {
    const current = state as SlidingWindow.State
    const slots = current.slots.slice()
    const c = Math.floor(now / w)
    let left = units
    let counted = 0
    for (let tick = c; tick >= c - buckets; tick--) {
      const at = luaMod(tick, slotCount)
      const slot = slots[at]
      if (slot === undefined || slot.index !== tick) continue
      const taken = Math.min(left, slot.count)
      left -= taken
      const count = slot.count - taken
      slots[at] = count > 0 ? { index: tick, count } : undefined
      counted += count
    }
    return counted === 0 ? undefined : { slots, expiresAt: current.expiresAt }
  }
}

/** Sliding-window log: the newest units entries of the window go. */
const logReward = (windowMs: number): Reward => (state, now, units) => {
  const current = state as SlidingWindowLog.State
  const windowStart = now - windowMs
  const runs: Array<SlidingWindowLog.Run> = current.runs.filter((run) => run.at > windowStart)
  let left = units
  while (left > 0 && runs.length > 0) {
    const newest = runs[runs.length - 1]!
    if (newest.count > left) {
      runs[runs.length - 1] = { at: newest.at, count: newest.count - left }
      left = 0
    } else {
      runs.pop()
      left -= newest.count
    }
  }
  return runs.length === 0 ? undefined : { runs, expiresAt: current.expiresAt }
}

/**
 * The reward of a rate `strategy` (a `rolling` quota is the sliding window it is).
 *
 * @since 0.3.0
 * @internal
 */
export const rewardOf = (strategy: Strategy): Reward => {
  switch (strategy.kind) {
    case "gcra":
      return gcraReward(strategy.periodMs, strategy.limit)
    case "tokenBucket":
      return tokenBucketReward(strategy.capacity, strategy.refillPerSec)
    case "fixedWindow":
      return countDown
    case "slidingWindow":
      return slidingWindowReward(strategy.windowMs, strategy.buckets)
    case "slidingWindowLog":
      return logReward(strategy.windowMs)
    case "quota": {
      if (strategy.resetCadence !== "rolling") return countDown
      const sliding = quota.slidingWindowOptions(strategy)
      return slidingWindowReward(sliding.windowMs, sliding.buckets)
    }
  }
}

/**
 * The reward of a token budget (a meter): its window's spent tokens go down.
 *
 * @since 0.3.0
 * @internal
 */
export const budgetReward: Reward = countDown
