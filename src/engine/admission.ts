/**
 * Admission: the concurrency axis (one `Guard` per admitter) with its lease table, optionally unified
 * with a rate axis keyed by the request key. The one home of the rule that combines the two axes; the
 * Memory store runs it, and the Lua admission scripts compute the same thing (the differential test
 * drives this code against them).
 *
 * The rule, at `now`:
 * 1. Sweep: every lease whose expiry is at or before `now` is reclaimed, as dropped (its RTT is
 *    `now − acquiredAt`). Every operation sweeps first, as the scripts do.
 * 2. Acquire: no free slot → denied on the concurrency axis (`limit` the ceiling, `remaining` 0,
 *    `resetAt` now, `retryAfterMs` = max(1, round(latest healthy RTT))), nothing consumed. Otherwise,
 *    with a rate axis, a consuming rate check of `cost` on the key; a rate denial is the answer (axis
 *    `rate`) and holds nothing. Otherwise the slot is taken under the given lease id, expiring at
 *    `now + ttlMs`, and the decision is the concurrency one (`remaining` = ceiling − in-flight, `resetAt`
 *    now) unless the rate decision has fewer `remaining`, in which case it is the rate decision.
 * 3. Release: an unknown id releases nothing; a held one frees its slot (`dropped` contracts an
 *    adaptive ceiling).
 * 4. Renew: each held id's expiry moves to `now + ttlMs`; unknown ids are gone; the next deadline is
 *    `now + ttlMs`.
 *
 * No clock, no I/O: the caller passes `now` and mints lease ids.
 *
 * @since 0.2.0
 */
import type { DecisionData } from "../Decision.js"
import { type ConcurrencyOptions, Guard } from "./concurrency.js"

/**
 * The rate axis of a unified admitter: a consuming check of `cost` units on `key` at `now`, whose state
 * is written only when allowed.
 *
 * @since 0.2.0
 * @category models
 */
export interface AdmissionRate {
  readonly check: (key: string, now: number, cost: number) => DecisionData
}

/**
 * Which axis denied an admission (`""` when it was allowed).
 *
 * @since 0.2.0
 * @category models
 */
export type AdmissionAxis = "" | "rate" | "concurrency"

/**
 * The outcome of an acquire: the decision, the denying axis, the lease's expiry (0 when denied) and the
 * ids this call's sweep reclaimed (sorted).
 *
 * @since 0.2.0
 * @category models
 */
export interface Acquired {
  readonly decision: DecisionData
  readonly axis: AdmissionAxis
  readonly expiresAt: number
  readonly reclaimed: ReadonlyArray<string>
}

/**
 * The outcome of a release: 1 when the id was held and is now free, else 0; plus the sweep's reclaims.
 *
 * @since 0.2.0
 * @category models
 */
export interface Released {
  readonly released: 0 | 1
  readonly reclaimed: ReadonlyArray<string>
}

/**
 * The outcome of a renewal: the ids still held (renewed), the ids gone, the next deadline, and the ids
 * this call's sweep reclaimed (sorted).
 *
 * @since 0.2.0
 * @category models
 */
export interface Renewed {
  readonly live: ReadonlyArray<string>
  readonly gone: ReadonlyArray<string>
  readonly deadline: number
  readonly reclaimed: ReadonlyArray<string>
}

/** A held slot: when it was taken and when it lapses unless renewed. */
class HeldLease {
  declare readonly acquiredAt: number
  declare expiresAt: number
  constructor(acquiredAt: number, expiresAt: number) {
    this.acquiredAt = acquiredAt
    this.expiresAt = expiresAt
  }
}

/**
 * One admitter's state: its ceiling, its held leases and (for a unified admitter) its rate axis.
 *
 * @since 0.2.0
 * @category models
 */
export class Admitter {
  /** The concurrency ceiling and its in-flight count. */
  readonly guard: Guard
  private readonly leases = new Map<string, HeldLease>()

  constructor(
    concurrency: ConcurrencyOptions,
    private readonly rate: AdmissionRate | undefined,
    /** How long a lease lives without renewal, in ms. */
    readonly ttlMs: number
  ) {
    this.guard = new Guard(concurrency)
  }

  /** Whether `id` is held (reclaimed leases are not, once swept). */
  holds(id: string): boolean {
    return this.leases.has(id)
  }

  /** How many leases are held (expired ones included until a sweep). */
  get held(): number {
    return this.leases.size
  }

  /** Reclaims, as dropped, every lease expired at `now`; returns their ids, sorted. */
  sweep(now: number): ReadonlyArray<string> {
    let reclaimed: Array<string> | undefined
    for (const [id, lease] of this.leases) {
      if (lease.expiresAt > now) continue
      this.leases.delete(id)
      this.guard.release(true, Math.max(0, now - lease.acquiredAt))
      ;(reclaimed ??= []).push(id)
    }
    return reclaimed === undefined ? [] : reclaimed.sort()
  }

  /** Decides an admission at `now` and, when allowed, holds a slot under `id` (which must not be held). */
  acquire(now: number, id: string, key: string, cost: number): Acquired {
    const reclaimed = this.sweep(now)
    const guard = this.guard
    if (!guard.canAcquire()) {
      const decision: DecisionData = {
        allowed: false,
        limit: guard.limit,
        remaining: 0,
        resetAt: now,
        retryAfterMs: Math.max(1, Math.round(guard.lastRttMs))
      }
      return { decision, axis: "concurrency", expiresAt: 0, reclaimed }
    }
    let rateDecision: DecisionData | undefined
    if (this.rate !== undefined) {
      rateDecision = this.rate.check(key, now, cost)
      if (!rateDecision.allowed) return { decision: rateDecision, axis: "rate", expiresAt: 0, reclaimed }
    }
    guard.tryAcquire()
    const expiresAt = now + this.ttlMs
    this.leases.set(id, new HeldLease(now, expiresAt))
    const concurrency: DecisionData = {
      allowed: true,
      limit: guard.limit,
      remaining: Math.max(0, guard.limit - guard.inflight),
      resetAt: now,
      retryAfterMs: 0
    }
    const decision = rateDecision !== undefined && rateDecision.remaining < concurrency.remaining
      ? rateDecision
      : concurrency
    return { decision, axis: "", expiresAt, reclaimed }
  }

  /** Frees the slot of `id` at `now` (a no-op for an id not held). */
  release(now: number, id: string, dropped: boolean): Released {
    const reclaimed = this.sweep(now)
    const lease = this.leases.get(id)
    if (lease === undefined) return { released: 0, reclaimed }
    this.leases.delete(id)
    this.guard.release(dropped, Math.max(0, now - lease.acquiredAt))
    return { released: 1, reclaimed }
  }

  /** Renews every held id of `ids` at `now`. */
  renew(now: number, ids: ReadonlyArray<string>): Renewed {
    const reclaimed = this.sweep(now)
    const live: Array<string> = []
    const gone: Array<string> = []
    const deadline = now + this.ttlMs
    for (const id of ids) {
      const lease = this.leases.get(id)
      if (lease === undefined) {
        gone.push(id)
      } else {
        lease.expiresAt = deadline
        live.push(id)
      }
    }
    return { live, gone, deadline, reclaimed }
  }
}
