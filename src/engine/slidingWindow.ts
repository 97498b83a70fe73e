/**
 * Sliding window, bucketed estimate, CONTRACT.md §5. The window is split into `buckets` sub-windows
 * ("ticks") of width `w`; the state is a ring of `buckets + 1` slots, slot = tick mod (buckets + 1), each
 * holding the tick that owns it and that tick's count. That is the Redis hash: field = slot number,
 * value = "tick:count". A slot owned by another tick (an older lap) counts 0.
 *
 * Expression order of a check (IEEE-754 doubles, in this order; the Lua script must do the same):
 *
 * ```
 * S       = buckets;  slots = S + 1
 * w       = windowMs / S
 * c       = floor(now / w)
 * elapsed = now - c * w;      if elapsed < 0 then elapsed = 0
 * weight  = (w - elapsed) / w; clamped to [0, 1]
 * get(i)  = count of slot (i - floor(i / slots) * slots) when its stored tick == i, else 0
 * full    = 0; for j = c - S + 1 .. c (ascending): full = full + get(j)
 * oldest  = get(c - S)
 * estimate  = full + oldest * weight
 * projected = estimate + cost
 * resetAt   = ceil((c + 1) * w + windowMs)
 * allow when projected <= limit:
 *   slot c mod slots := "c:(get(c) + cost)"
 *   remaining = max(0, floor(limit - projected))
 *   the key expires at now + ceil(windowMs + w)
 * deny:
 *   D = projected - limit
 *   retryAfterMs = ceil(D * w / oldest)  when oldest > 0 and D <= oldest * weight
 *                  ceil((c + 1) * w - now) otherwise;  at least 1
 *   remaining = max(0, floor(limit - estimate))
 * ```
 *
 * (Lua note: write the tick and count with `string.format("%d", …)` or `%.17g`; plain `..` on a Lua 5.1
 * number uses `%.14g` and loses digits for ticks or counts of 15 digits or more.)
 *
 * The reported limit is `limit`. Peek: `allowed`/`retryAfterMs` of a cost-1 check, `remaining` =
 * `max(0, floor(limit - estimate))` (at least 1 when allowed, should rounding say 0) and the same `resetAt`.
 * Forecast: the estimate decays as time passes; capacity is peek's `remaining`: `nextReplenishAt` is the
 * first whole ms at which it has grown by one, `fullAt` the first at which it is `limit` (both `now` when
 * it already is).
 *
 * Fresh (`isFresh`): a state (unless expired) every slot of which counts 0 or belongs to a tick before
 * c - S reads as no state: no tick the view reads from now on matches one of those slots.
 *
 * Admission bound: the estimate weighs the oldest tick by the unexpired fraction of its width, so the
 * units admitted in the ticks c - S + 1 .. c plus that fraction of tick c - S never exceed `limit`;
 * over any S consecutive ticks (one window aligned to ticks) the admitted units are at most `limit`.
 *
 * @since 0.1.0
 */
import type { DecisionData } from "../Decision.js"
import { allow, deny, firstInstant, live, luaMod } from "./internal.js"
import type { ForecastData, RateEngine, Step } from "./types.js"

/**
 * One slot of the ring: the tick that owns it and that tick's count.
 *
 * @since 0.1.0
 * @category models
 */
export interface Slot {
  readonly index: number
  readonly count: number
}

/**
 * The stored state: `buckets + 1` slots (unwritten slots are `undefined`) and the key's expiry.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly slots: ReadonlyArray<Slot | undefined>
  readonly expiresAt: number
}

/**
 * The sliding-window parameters (the `slidingWindow` strategy of `Policy`, with or without its `kind`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly limit: number
  readonly windowMs: number
  readonly buckets: number
}

/**
 * Decodes the Redis hash (field → "tick:count") into a state, for a read script's reply. Fields outside
 * `0 .. buckets` or values that do not parse are ignored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromHash = (
  buckets: number,
  fields: Readonly<Record<string, string>>,
  expiresAt: number
): State => {
  const slots: Array<Slot | undefined> = new Array<Slot | undefined>(buckets + 1).fill(undefined)
  for (const field of Object.keys(fields)) {
    const slot = Number(field)
    const value = fields[field]
    if (!Number.isInteger(slot) || slot < 0 || slot > buckets || value === undefined) continue
    const separator = value.indexOf(":")
    if (separator < 0) continue
    const index = Number(value.slice(0, separator))
    const count = Number(value.slice(separator + 1))
    if (Number.isFinite(index) && Number.isFinite(count)) slots[slot] = { index, count }
  }
  return { slots, expiresAt }
}

/** The per-instant quantities every operation starts from. */
interface View {
  readonly c: number
  readonly weight: number
  readonly full: number
  readonly oldest: number
  readonly estimate: number
  readonly resetAt: number
}

/**
 * Builds the sliding-window engine for `options`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): RateEngine<State> => {
  const limit = options.limit
  const windowMs = options.windowMs
  const S = options.buckets
  const slotCount = S + 1
  const w = windowMs / S
  const keyTtl = Math.ceil(windowMs + w)

  const countOf = (slots: ReadonlyArray<Slot | undefined> | undefined, tick: number): number => {
    if (slots === undefined) return 0
    const slot = slots[luaMod(tick, slotCount)]
    return slot !== undefined && slot.index === tick ? slot.count : 0
  }

  const view = (state: State | undefined, now: number): View => {
    const slots = live(state, now)?.slots
    const c = Math.floor(now / w)
    let elapsed = now - c * w
    if (elapsed < 0) elapsed = 0
    let weight = (w - elapsed) / w
    if (weight < 0) weight = 0
    if (weight > 1) weight = 1
    let full = 0
    for (let j = c - S + 1; j <= c; j++) full = full + countOf(slots, j)
    const oldest = countOf(slots, c - S)
    const estimate = full + oldest * weight
    return { c, weight, full, oldest, estimate, resetAt: Math.ceil((c + 1) * w + windowMs) }
  }

  const unitsLeft = (estimate: number): number => {
    const remaining = Math.floor(limit - estimate)
    return remaining < 0 ? 0 : remaining
  }

  const retryAfter = (v: View, now: number, projected: number): number => {
    const D = projected - limit
    let retry = v.oldest > 0 && D <= v.oldest * v.weight
      ? Math.ceil(D * w / v.oldest)
      : Math.ceil((v.c + 1) * w - now)
    if (retry < 1) retry = 1
    return retry
  }

  const check = (state: State | undefined, now: number, cost: number): Step<State> => {
    const v = view(state, now)
    const projected = v.estimate + cost
    if (projected <= limit) {
      const current = live(state, now)
      const slots = current === undefined
        ? new Array<Slot | undefined>(slotCount).fill(undefined)
        : current.slots.slice()
      slots[luaMod(v.c, slotCount)] = { index: v.c, count: countOf(current?.slots, v.c) + cost }
      return {
        decision: allow(limit, unitsLeft(projected), v.resetAt),
        state: { slots, expiresAt: now + keyTtl }
      }
    }
    return { decision: deny(limit, unitsLeft(v.estimate), v.resetAt, retryAfter(v, now, projected)), state }
  }

  /** Peek's `remaining` (at least 1 when a cost-1 check would pass). */
  const peekUnits = (v: View): number => {
    const remaining = unitsLeft(v.estimate)
    return remaining < 1 && v.estimate + 1 <= limit ? 1 : remaining
  }

  const peek = (state: State | undefined, now: number): DecisionData => {
    const v = view(state, now)
    const projected = v.estimate + 1
    if (projected <= limit) return allow(limit, peekUnits(v), v.resetAt)
    return deny(limit, peekUnits(v), v.resetAt, retryAfter(v, now, projected))
  }

  const forecast = (state: State | undefined, now: number, cost: number): ForecastData => {
    const v = view(state, now)
    // Successive checks at `now` add `cost` to tick c: `full` grows by exactly `cost` each time (whole
    // numbers), the weighted oldest term is unchanged, so check k (from 0) is admitted iff
    // (full + k * cost + oldest * weight) + cost <= limit — monotone in k, hence a bisection.
    const weighted = v.oldest * v.weight
    const admitted = (k: number): boolean => (v.full + k * cost + weighted) + cost <= limit
    let lo = 0 // admitted(lo - 1) holds (vacuous for 0)
    let hi = v.full >= limit ? 0 : Math.floor((limit - v.full) / cost) + 1 // admitted(hi) fails
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2)
      if (admitted(mid)) lo = mid + 1
      else hi = mid
    }
    const spendableNow = lo
    // Capacity in whole units as peek reports it; "full" is a fresh key's `limit`.
    const current = peekUnits(v)
    if (current >= limit) return { spendableNow, nextReplenishAt: now, fullAt: now }
    const unitsAt = (t: number): number => peekUnits(view(state, t))
    // The newest tick with a count still in view leaves the window entirely at (tick + S + 1) * w.
    const slots = live(state, now)?.slots
    let newest = v.c - S
    for (let j = v.c; j > v.c - S; j--) {
      if (countOf(slots, j) > 0) {
        newest = j
        break
      }
    }
    let emptyAt = Math.ceil((newest + S + 1) * w)
    if (emptyAt <= now) emptyAt = now + 1
    // Float rounding can leave a sliver of weight at the boundary: step to the first full instant.
    for (let guard = 0; guard < 4 && unitsAt(emptyAt) < limit; guard++) emptyAt++
    const fullAt = firstInstant(now, emptyAt, (t) => unitsAt(t) >= limit)
    const nextReplenishAt = firstInstant(now, fullAt, (t) => unitsAt(t) > current)
    return { spendableNow, nextReplenishAt, fullAt }
  }

  /** No slot counts, now or later: each is empty or owned by a tick older than the window's oldest. */
  const isFresh = (state: State, now: number): boolean => {
    if (now > state.expiresAt) return true
    const oldestTick = Math.floor(now / w) - S
    for (const slot of state.slots) {
      if (slot !== undefined && slot.count > 0 && slot.index >= oldestTick) return false
    }
    return true
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
