/**
 * Sliding window log (exact), CONTRACT.md §5. Redis keeps one sorted-set member per admitted unit with
 * score = the admission instant; here a run `{ at, count }` stands for `count` members of score `at`, so
 * memory is O(distinct instants) whatever the cost. Runs are sorted by `at`, one run per instant.
 *
 * Expression order of a check (the Lua script must do the same):
 *
 * ```
 * windowStart = now - windowMs
 * drop every entry with score <= windowStart            -- ZREMRANGEBYSCORE -inf windowStart
 * count = the number of entries left
 * allow when count + cost <= limit:
 *   add `cost` entries of score now; the key expires at now + max(1, ceil(windowMs))
 *   remaining = max(0, limit - (count + cost))
 *   resetAt   = ceil(oldest score + windowMs)           -- the oldest after adding (now when it was
 *                                                            empty): now bounds it only when cost > 0, so
 *                                                            with cost 0 an entry stamped after now (the
 *                                                            clock stepped back) stays the oldest
 * deny:
 *   retryAfterMs = windowMs                               when count == 0
 *                = max(1, ceil(score_k + windowMs - now)) otherwise, where score_k is the k-th oldest
 *                  entry (1-based), k = clamp(count + cost - limit, 1, count)
 *   remaining = max(0, limit - count)
 *   resetAt   = ceil(oldest score + windowMs)             -- now + windowMs when empty
 * ```
 *
 * A denial writes nothing here; the Redis script prunes expired members before deciding, which changes
 * nothing observable (pruned members never count again).
 *
 * Fresh (`isFresh`): a log whose newest entry has left the window (or that expired) counts 0, as no
 * state does, and a check appends to an empty log either way.
 *
 * The reported limit is `limit`. Peek: `allowed`/`retryAfterMs` of a cost-1 check, `remaining` =
 * `max(0, limit - count)`, the same `resetAt`. Forecast: capacity returns when entries age out:
 * `nextReplenishAt` = ceil(at + windowMs) of the run whose departure first lifts `remaining`, `fullAt` =
 * ceil(newest at + windowMs); both are `now` when the log is empty.
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"
import { allow, deny, live, wholeQuotient } from "./internal.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * `count` log entries sharing the score `at` (epoch-ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface Run {
  readonly at: number
  readonly count: number
}

/**
 * The stored state: the log as runs sorted by `at`, and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly runs: ReadonlyArray<Run>
  readonly expiresAt: number
}

/**
 * The sliding-window-log parameters (the `slidingWindowLog` strategy of `Policy`, with or without its
 * `kind`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly limit: number
  readonly windowMs: number
}

/**
 * Groups sorted-set scores (as a read script returns them, ascending) into a state.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromScores = (scores: ReadonlyArray<number>, expiresAt: number): State => {
  const sorted = scores.slice().sort((a, b) => a - b)
  const runs: Array<Run> = []
  for (const at of sorted) {
    const last = runs[runs.length - 1]
    if (last !== undefined && last.at === at) runs[runs.length - 1] = { at, count: last.count + 1 }
    else runs.push({ at, count: 1 })
  }
  return { runs, expiresAt }
}

const EMPTY: ReadonlyArray<Run> = []

/** The live part of a log at `now`: runs from index `first` on, holding `count` entries. */
interface View {
  readonly runs: ReadonlyArray<Run>
  readonly first: number
  readonly count: number
}

/**
 * Builds the sliding-window-log engine for `options`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): RateEngine<State> => {
  const limit = options.limit
  const windowMs = options.windowMs
  let keyTtl = Math.ceil(windowMs)
  if (keyTtl < 1) keyTtl = 1

  const view = (state: State | undefined, now: number): View => {
    const runs = live(state, now)?.runs ?? EMPTY
    const windowStart = now - windowMs
    let first = 0
    while (first < runs.length && runs[first]!.at <= windowStart) first++
    let count = 0
    for (let i = first; i < runs.length; i++) count += runs[i]!.count
    return { runs, first, count }
  }

  const left = (count: number): number => {
    const remaining = limit - count
    return remaining < 0 ? 0 : remaining
  }

  const resetFrom = (v: View, now: number): number => Math.ceil((v.count > 0 ? v.runs[v.first]!.at : now) + windowMs)

  /** The score of the k-th oldest live entry (1-based, 1 <= k <= count). */
  const kthOldest = (v: View, k: number): number => {
    let seen = 0
    for (let i = v.first; i < v.runs.length; i++) {
      const run = v.runs[i]!
      seen += run.count
      if (seen >= k) return run.at
    }
    return v.runs[v.runs.length - 1]!.at
  }

  const retryAfter = (v: View, now: number, cost: number): number => {
    if (v.count === 0) return windowMs
    let k = v.count + cost - limit
    if (k < 1) k = 1
    if (k > v.count) k = v.count
    let retry = Math.ceil(kthOldest(v, k) + windowMs - now)
    if (retry < 1) retry = 1
    return retry
  }

  /** The live runs plus `cost` entries at `now`, kept sorted with one run per instant (none added for 0). */
  const appended = (v: View, now: number, cost: number): ReadonlyArray<Run> => {
    const runs = v.runs.slice(v.first)
    if (cost === 0) return runs
    let i = runs.length
    while (i > 0 && runs[i - 1]!.at > now) i--
    const before = runs[i - 1]
    if (before !== undefined && before.at === now) runs[i - 1] = { at: now, count: before.count + cost }
    else runs.splice(i, 0, { at: now, count: cost })
    return runs
  }

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const v = view(state, now)
    if (v.count + cost <= limit) {
      const runs = appended(v, now, cost)
      return {
        decision: allow(limit, left(v.count + cost), Math.ceil((runs[0]?.at ?? now) + windowMs)),
        state: { runs, expiresAt: now + keyTtl }
      }
    }
    return { decision: deny(limit, left(v.count), resetFrom(v, now), retryAfter(v, now, cost)), state }
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const v = view(state, now)
    if (v.count + 1 <= limit) return allow(limit, left(v.count), resetFrom(v, now))
    return deny(limit, left(v.count), resetFrom(v, now), retryAfter(v, now, 1))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const v = view(state, now)
    const spendableNow = v.count <= limit ? wholeQuotient(limit - v.count, cost) : 0
    if (v.count === 0) return { spendableNow, nextReplenishAt: now, fullAt: now }
    const current = left(v.count)
    let nextReplenishAt = now
    let remainingCount = v.count
    for (let i = v.first; i < v.runs.length; i++) {
      const run = v.runs[i]!
      remainingCount -= run.count
      if (left(remainingCount) > current) {
        nextReplenishAt = Math.ceil(run.at + windowMs)
        break
      }
    }
    const fullAt = Math.ceil(v.runs[v.runs.length - 1]!.at + windowMs)
    return { spendableNow, nextReplenishAt, fullAt }
  }

  /** The newest run is dropped by the view's own test (`at <= now - windowMs`), hence every run is. */
  const isFresh = (state: State, now: number): boolean => {
    if (now > state.expiresAt) return true
    const newest = state.runs[state.runs.length - 1]
    return newest === undefined || newest.at <= now - windowMs
  }

  return {
    limit,
    check,
    peek,
    forecast,
    expiresAt: (state) => state.expiresAt,
    isFresh
  }
}
