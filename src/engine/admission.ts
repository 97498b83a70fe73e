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
 * A ceiling above the guard's own (a fleet share): admissions stop at `ceiling(now, guard.limit)`, which
 * decisions then report as their `limit`.
 *
 * @since 0.3.0
 * @category models
 */
export interface AdmissionGate {
  readonly ceiling: (now: number, localLimit: number) => number
}

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

/** A lease's expiry as queued: the instant and the id (stale once the lease is renewed or gone). */
class Expiry {
  declare readonly at: number
  declare readonly id: string
  constructor(at: number, id: string) {
    this.at = at
    this.id = id
  }
}

/** A binary min-heap of expiries by instant. */
class ExpiryHeap {
  readonly items: Array<Expiry> = []

  push(entry: Expiry): void {
    const items = this.items
    items.push(entry)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (items[parent]!.at <= entry.at) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = entry
  }

  /** Removes the earliest entry. */
  pop(): void {
    const items = this.items
    const last = items.pop()
    if (last === undefined || items.length === 0) return
    let i = 0
    const n = items.length
    while (true) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && items[right]!.at < items[left]!.at ? right : left
      if (items[child]!.at >= last.at) break
      items[i] = items[child]!
      i = child
    }
    items[i] = last
  }
}

/**
 * The queue of expiries by instant, so a sweep touches only the leases that lapsed: a renewal queues the
 * new instant and leaves the old entry to be skipped when it surfaces (lazy deletion).
 *
 * Every lease of an admitter lives `ttlMs` from its acquire or renewal, and the clock moves forward, so
 * expiries nearly always arrive in order: those go to a FIFO (O(1) in and out, whatever the number
 * held). An expiry earlier than the FIFO's last (a clock that stepped back) goes to a min-heap beside it;
 * the earliest of the two heads is next.
 */
class ExpiryQueue {
  private fifo: Array<Expiry> = []
  private head = 0
  private readonly late = new ExpiryHeap()

  get size(): number {
    return this.fifo.length - this.head + this.late.items.length
  }

  push(entry: Expiry): void {
    const fifo = this.fifo
    if (fifo.length === this.head || fifo[fifo.length - 1]!.at <= entry.at) fifo.push(entry)
    else this.late.push(entry)
  }

  /** The earliest entry, if any, without removing it. */
  peek(): Expiry | undefined {
    const first = this.fifo[this.head]
    const early = this.late.items[0]
    if (early === undefined) return first
    return first === undefined || early.at < first.at ? early : first
  }

  /** Removes the earliest entry (the one `peek` returns). */
  pop(): void {
    const first = this.fifo[this.head]
    const early = this.late.items[0]
    if (early !== undefined && (first === undefined || early.at < first.at)) {
      this.late.pop()
      return
    }
    if (first === undefined) return
    this.head++
    if (this.head === this.fifo.length) {
      this.fifo = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.fifo.length) {
      this.fifo = this.fifo.slice(this.head)
      this.head = 0
    }
  }

  /** Drops the latest entry when it is `id`'s (a lease released before any other was queued). */
  dropLast(id: string): void {
    const fifo = this.fifo
    if (fifo.length > this.head && fifo[fifo.length - 1]!.id === id) fifo.pop()
  }

  /** Drops every entry (all stale once no lease is held). */
  clear(): void {
    this.fifo = []
    this.head = 0
    this.late.items.length = 0
  }

  /** Replaces every entry with `entries`, in order of instant. */
  rebuild(entries: Array<Expiry>): void {
    // Held leases come in acquire order, so their expiries are nearly sorted: the sort is about linear.
    entries.sort((a, b) => a.at - b.at)
    this.fifo = entries
    this.head = 0
    this.late.items.length = 0
  }
}

/**
 * One admitter's state: its ceiling, its held leases and (for a unified admitter) its rate axis. A
 * sweep, an acquire and a renewal cost O(1) per lease they touch (amortized; O(log n) for an expiry queued
 * after the clock stepped back), never a scan of every lease held.
 *
 * @since 0.2.0
 * @category models
 */
export class Admitter {
  /** The concurrency ceiling and its in-flight count. */
  readonly guard: Guard
  private readonly leases = new Map<string, HeldLease>()
  private readonly expiries = new ExpiryQueue()

  constructor(
    concurrency: ConcurrencyOptions,
    private readonly rate: AdmissionRate | undefined,
    /** How long a lease lives without renewal, in ms. */
    readonly ttlMs: number,
    /** A ceiling above the guard's (a fleet share), if any. */
    private readonly gate?: AdmissionGate
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

  /** How many expiries are queued, stale ones included (at most twice the held leases, plus 64). */
  get queued(): number {
    return this.expiries.size
  }

  /** Reclaims, as dropped, every lease expired at `now`; returns their ids, sorted. */
  sweep(now: number): ReadonlyArray<string> {
    let reclaimed: Array<string> | undefined
    const queue = this.expiries
    for (let next = queue.peek(); next !== undefined && next.at <= now; next = queue.peek()) {
      queue.pop()
      const lease = this.leases.get(next.id)
      // A renewed lease queued its new expiry; a released one is gone: either way this entry is stale.
      if (lease === undefined || lease.expiresAt !== next.at) continue
      this.leases.delete(next.id)
      this.guard.release(true, Math.max(0, now - lease.acquiredAt))
      ;(reclaimed ??= []).push(next.id)
    }
    if (this.leases.size === 0 && queue.size > 0) this.expiries.clear()
    return reclaimed === undefined ? [] : reclaimed.sort()
  }

  /**
   * Queues a lease's expiry. Released and renewed leases leave stale entries behind; once they
   * outnumber the live ones the queue is rebuilt from the held leases (amortized O(1) per operation).
   */
  private queue(id: string, at: number): void {
    const queue = this.expiries
    queue.push(new Expiry(at, id))
    if (queue.size > 2 * this.leases.size + 64) {
      queue.rebuild(Array.from(this.leases, ([held, lease]) => new Expiry(lease.expiresAt, held)))
    }
  }

  /** Decides an admission at `now` and, when allowed, holds a slot under `id` (which must not be held). */
  acquire(now: number, id: string, key: string, cost: number): Acquired {
    const reclaimed = this.sweep(now)
    const guard = this.guard
    const limit = this.gate === undefined ? guard.limit : this.gate.ceiling(now, guard.limit)
    if (guard.inflight >= limit) {
      const decision: DecisionData = {
        allowed: false,
        limit,
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
    this.queue(id, expiresAt)
    const concurrency: DecisionData = {
      allowed: true,
      limit,
      remaining: Math.max(0, limit - guard.inflight),
      resetAt: now,
      retryAfterMs: 0
    }
    const decision = rateDecision !== undefined && rateDecision.remaining < concurrency.remaining
      ? rateDecision
      : concurrency
    return { decision, axis: "", expiresAt, reclaimed }
  }

  /**
   * Frees the slot of `id` as if it had never been taken (an admission abandoned before it was answered):
   * no RTT sample, the ceiling unchanged. Returns whether `id` was held.
   */
  cancel(id: string): boolean {
    if (!this.leases.delete(id)) return false
    this.expiries.dropLast(id)
    this.guard.cancel()
    return true
  }

  /** Frees the slot of `id` at `now` (a no-op for an id not held). */
  release(now: number, id: string, dropped: boolean): Released {
    const reclaimed = this.sweep(now)
    const lease = this.leases.get(id)
    if (lease === undefined) return { released: 0, reclaimed }
    this.leases.delete(id)
    // Its expiry is stale now; when it is the last one queued it goes at once (no stale entry left).
    this.expiries.dropLast(id)
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
        if (lease.expiresAt !== deadline) {
          lease.expiresAt = deadline
          this.queue(id, deadline)
        }
        live.push(id)
      }
    }
    return { live, gone, deadline, reclaimed }
  }
}
