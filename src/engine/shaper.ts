/**
 * The leaky-bucket shaper: calls leave at a constant rate, each one reserving the next departure
 * instant, and a call waits for its instant instead of being denied, unless the queue ahead of it would
 * make it wait longer than `maxQueueMs`. The state is one number, the departure instant of the next
 * call (the GCRA TAT's recurrence, with the tolerance spent waiting instead of bursting).
 *
 * Expression order of a reservation (IEEE-754 doubles, in this order; the Lua script does the same):
 *
 * ```
 * T         = 1000 / ratePerSec                   -- ms per unit
 * stored    = the stored departure, or now when there is none (or it expired)
 * departure = stored < now ? now : stored          -- max(stored, now)
 * delay     = departure - now
 * refuse when delay > maxQueueMs:
 *   retryAfterMs = ceil(delay - maxQueueMs)        -- when the queue is short enough again
 *   (nothing is written)
 * otherwise:
 *   end   = departure + T * cost;  store end (written with %.17g), the key expiring at now + px,
 *           px = ceil(end - now), at least 1
 *   delayMs = ceil(delay)                           -- the call goes at now + delayMs, never earlier
 * ```
 *
 * Giving a reservation back (its call was interrupted while it waited): when the stored departure is
 * still exactly its `end` (no later reservation was made on the key), the departure goes back to its
 * `start`, so the next call takes its instant; otherwise nothing changes (the later calls keep their
 * instants, and the freed instant stays unused: the rate is never exceeded, one slot is lost).
 *
 * Fresh (`isFresh`): a departure at or before `now` reads as no state (both give departure = now).
 *
 * @since 0.3.0
 * @internal
 */

/**
 * The shaper's parameters.
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** Units that leave per second (the shaped rate). */
  readonly ratePerSec: number
  /** The longest a call may wait for its instant; a call that would wait longer is refused. */
  readonly maxQueueMs: number
}

/**
 * The outcome of a reservation. Accepted: the call goes after `delayMs`, having reserved the instants
 * from `start` to `end` (exact doubles, for giving it back). Refused: `retryAfterMs` until the queue is
 * short enough; `start` is the departure that made it too long and `end` equals it.
 *
 * @since 0.3.0
 * @category models
 */
export interface Outcome {
  readonly accepted: boolean
  readonly delayMs: number
  readonly retryAfterMs: number
  readonly start: number
  readonly end: number
  /** Cost-1 calls that could still be accepted after this one at `now`. */
  readonly remaining: number
  /** Cost-1 calls an empty queue accepts at one instant: `floor(maxQueueMs / T) + 1`. */
  readonly limit: number
  /** When the key's expiry is set (accepted): `now + px`. */
  readonly expiresAt: number
}

/**
 * The shaper engine for one set of options.
 *
 * @since 0.3.0
 * @category models
 */
export interface Engine {
  readonly limit: number
  /** Reserves `cost` units on a key whose stored departure is `stored` (undefined: none). */
  readonly reserve: (stored: number | undefined, now: number, cost: number) => Outcome
  /** The departure after giving back `[start, end]`, or undefined when it cannot be given back. */
  readonly giveBack: (stored: number | undefined, start: number, end: number) => number | undefined
}

/**
 * Builds the shaper engine for `options`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: Options): Engine => {
  const T = 1000 / options.ratePerSec
  const maxQueueMs = options.maxQueueMs
  const limit = Math.floor(maxQueueMs / T) + 1

  /** Cost-1 calls accepted after a departure at `next`, at `now`. */
  const unitsLeft = (next: number, now: number): number => {
    const wait = next - now
    return wait > maxQueueMs ? 0 : Math.floor((maxQueueMs - wait) / T) + 1
  }

  const reserve = (stored: number | undefined, now: number, cost: number): Outcome => {
    const base = stored === undefined ? now : stored
    const departure = base < now ? now : base
    const delay = departure - now
    if (delay > maxQueueMs) {
      return {
        accepted: false,
        delayMs: 0,
        retryAfterMs: Math.ceil(delay - maxQueueMs),
        start: departure,
        end: departure,
        remaining: 0,
        limit,
        expiresAt: now
      }
    }
    const end = departure + T * cost
    let px = Math.ceil(end - now)
    if (px < 1) px = 1
    return {
      accepted: true,
      delayMs: Math.ceil(delay),
      retryAfterMs: 0,
      start: departure,
      end,
      remaining: unitsLeft(end, now),
      limit,
      expiresAt: now + px
    }
  }

  const giveBack = (stored: number | undefined, start: number, end: number): number | undefined =>
    stored === end ? start : undefined

  return { limit, reserve, giveBack }
}
