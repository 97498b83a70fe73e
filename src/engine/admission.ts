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
 *    `rate`) and holds nothing. Otherwise the slot is taken under the given (or a minted) id, expiring at
 *    `now + ttlMs`, and the decision is the concurrency one (`remaining` = ceiling − in-flight, `resetAt`
 *    now) unless the rate decision has fewer `remaining`, in which case it is the rate decision.
 * 3. Release: an unknown id releases nothing; a held one frees its slot (`dropped` contracts an
 *    adaptive ceiling).
 * 4. Renew: each held id's expiry moves to `now + ttlMs`; unknown ids are gone; the next deadline is
 *    `now + ttlMs`.
 *
 * No clock, no I/O: the caller passes `now`; lease ids are the caller's (`acquire`) or minted by the lease
 * table over the slot they name (`admit`).
 *
 * @since 0.2.0
 */
import type { DecisionData } from "../Decision.js"
import { type ConcurrencyOptions, Guard } from "./concurrency.js"
import { Fifo } from "./fifo.js"
import type { LeaseSlot } from "./leaseTable.js"
import { LeaseTable } from "./leaseTable.js"

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
 * The outcome of an `admit`: an `Acquired` and the minted id of the lease it holds ("" when denied).
 *
 * @since 0.3.0
 * @category models
 */
export interface Admitted extends Acquired {
  readonly leaseId: string
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

/**
 * A lease's expiry as queued: the instant, the lease's slot and which of the slot's leases it was (stale
 * once that lease is renewed or gone).
 */
class Expiry {
  declare readonly at: number
  declare readonly lease: LeaseSlot<Admitter>
  declare readonly generation: number
  constructor(at: number, lease: LeaseSlot<Admitter>) {
    this.at = at
    this.lease = lease
    this.generation = lease.generation
  }

  /** Whether this is the current expiry of a held lease. */
  get live(): boolean {
    return this.lease.generation === this.generation && this.lease.expiresAt === this.at
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
  /** The in-order expiries. */
  private readonly fifo = new Fifo<Expiry>()
  private readonly late = new ExpiryHeap()

  get size(): number {
    return this.fifo.size + this.late.items.length
  }

  push(entry: Expiry): void {
    const last = this.fifo.last()
    if (last === undefined || last.at <= entry.at) this.fifo.push(entry)
    else this.late.push(entry)
  }

  /** The earliest entry, if any, without removing it. */
  peek(): Expiry | undefined {
    const first = this.fifo.peek()
    const early = this.late.items[0]
    if (early === undefined) return first
    return first === undefined || early.at < first.at ? early : first
  }

  /** Removes the earliest entry (the one `peek` returns). */
  pop(): void {
    const first = this.fifo.peek()
    const early = this.late.items[0]
    if (early !== undefined && (first === undefined || early.at < first.at)) {
      this.late.pop()
      return
    }
    this.fifo.shift()
  }

  /** Drops the latest entry when it is `lease`'s current one (a lease released before any other was queued). */
  dropLast(lease: LeaseSlot<Admitter>): void {
    const last = this.fifo.last()
    if (last !== undefined && last.lease === lease && last.generation === lease.generation) this.fifo.pop()
  }

  /** Drops every entry (all stale once no lease is held). */
  clear(): void {
    this.fifo.clear()
    this.late.items.length = 0
  }

  /** Keeps only the current expiry of each held lease, in order of instant. */
  compact(): void {
    const kept: Array<Expiry> = []
    const seen = new Set<LeaseSlot<Admitter>>()
    const keep = (entry: Expiry) => {
      // A lease renewed back to an instant it had before is queued twice at it: one entry is enough.
      if (entry.live && !seen.has(entry.lease)) {
        seen.add(entry.lease)
        kept.push(entry)
      }
    }
    this.fifo.forEach(keep)
    for (const entry of this.late.items) keep(entry)
    // Entries come nearly in order of instant (the FIFO is sorted): the sort is about linear.
    kept.sort((a, b) => a.at - b.at)
    this.fifo.reset(kept)
    this.late.items.length = 0
  }
}

/**
 * One admitter's state: its ceiling, its held leases and (for a unified admitter) its rate axis. A
 * sweep, an acquire and a renewal cost O(1) per lease they touch (amortized; O(log n) for an expiry queued
 * after the clock stepped back), never a scan of every lease held, and finding a lease by a minted id
 * costs the same however many are held (its slot is in the id: see `LeaseTable`).
 *
 * Leases live in a `LeaseTable`, the admitter's own unless one is given (the Memory store gives all its
 * admitters one, so an id alone finds its admitter). `admit` mints the lease's id; `acquire` holds it under
 * the caller's id (the differential tests against the Lua scripts, the fleet's node-tagged ids), which the
 * admitter then finds through a map of its own: correct, not as fast.
 *
 * @since 0.2.0
 * @category models
 */
export class Admitter {
  /** The concurrency ceiling and its in-flight count. */
  readonly guard: Guard
  private readonly expiries = new ExpiryQueue()
  /** The leases held under a caller's id, by id (created at the first). */
  private named: Map<string, LeaseSlot<Admitter>> | undefined
  private count = 0

  constructor(
    concurrency: ConcurrencyOptions,
    private readonly rate: AdmissionRate | undefined,
    /** How long a lease lives without renewal, in ms. */
    readonly ttlMs: number,
    /** A ceiling above the guard's (a fleet share), if any. */
    private readonly gate?: AdmissionGate,
    /** The table the leases are held in (shared with other admitters, or this one's own). */
    readonly leases: LeaseTable<Admitter> = new LeaseTable()
  ) {
    this.guard = new Guard(concurrency)
  }

  /** The lease held here under `id`, if any. */
  private find(id: string): LeaseSlot<Admitter> | undefined {
    const lease = this.leases.find(id)
    if (lease !== undefined && lease.owner === this) return lease
    return this.named === undefined ? undefined : this.named.get(id)
  }

  /** Frees `lease`'s slot. */
  private free(lease: LeaseSlot<Admitter>): void {
    if (lease.named) this.named!.delete(lease.id)
    this.leases.release(lease)
    this.count--
  }

  /** Whether `id` is held (reclaimed leases are not, once swept). */
  holds(id: string): boolean {
    return this.find(id) !== undefined
  }

  /** How many leases are held (expired ones included until a sweep). */
  get held(): number {
    return this.count
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
      // A renewed lease queued its new expiry; a released one is gone: either way this entry is stale.
      if (!next.live) continue
      const lease = next.lease
      const id = lease.id
      const acquiredAt = lease.acquiredAt
      this.free(lease)
      this.guard.release(true, Math.max(0, now - acquiredAt))
      ;(reclaimed ??= []).push(id)
    }
    if (this.count === 0 && queue.size > 0) this.expiries.clear()
    return reclaimed === undefined ? [] : reclaimed.sort()
  }

  /**
   * Queues a lease's expiry. Released and renewed leases leave stale entries behind; once they
   * outnumber the live ones the queue keeps only the live ones (amortized O(1) per operation).
   */
  private queue(lease: LeaseSlot<Admitter>, at: number): void {
    const queue = this.expiries
    queue.push(new Expiry(at, lease))
    if (queue.size > 2 * this.count + 64) queue.compact()
  }

  /** Decides an admission at `now` and, when allowed, holds a slot under `id` (which must not be held). */
  acquire(now: number, id: string, key: string, cost: number): Acquired {
    return this.decide(now, key, cost, id)
  }

  /**
   * Decides an admission at `now` and, when allowed, holds a slot under a freshly minted id (`leaseId`,
   * "" when denied), which names its slot in `leases`.
   */
  admit(now: number, key: string, cost: number): Admitted {
    return this.decide(now, key, cost, undefined)
  }

  /** An acquire under `id` (an `Acquired`), or under a minted id (an `Admitted`) when `id` is undefined. */
  private decide(now: number, key: string, cost: number, id: undefined): Admitted
  private decide(now: number, key: string, cost: number, id: string): Acquired
  private decide(now: number, key: string, cost: number, id: string | undefined): Acquired | Admitted {
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
      return outcome(decision, "concurrency", 0, reclaimed, id, "")
    }
    let rateDecision: DecisionData | undefined
    if (this.rate !== undefined) {
      rateDecision = this.rate.check(key, now, cost)
      if (!rateDecision.allowed) return outcome(rateDecision, "rate", 0, reclaimed, id, "")
    }
    guard.tryAcquire()
    const expiresAt = now + this.ttlMs
    const lease = this.leases.take(this, now, expiresAt, id)
    if (id !== undefined) (this.named ??= new Map()).set(id, lease)
    this.count++
    this.queue(lease, expiresAt)
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
    return outcome(decision, "", expiresAt, reclaimed, id, lease.id)
  }

  /**
   * Frees the slot of `id` as if it had never been taken (an admission abandoned before it was answered):
   * no RTT sample, the ceiling unchanged. Returns whether `id` was held.
   */
  cancel(id: string): boolean {
    const lease = this.find(id)
    if (lease === undefined) return false
    this.expiries.dropLast(lease)
    this.free(lease)
    this.guard.cancel()
    return true
  }

  /** Frees the slot of `id` at `now` (a no-op for an id not held). */
  release(now: number, id: string, dropped: boolean): Released {
    const reclaimed = this.sweep(now)
    const lease = this.find(id)
    if (lease === undefined) return { released: 0, reclaimed }
    const acquiredAt = lease.acquiredAt
    // Its expiry is stale now; when it is the last one queued it goes at once (no stale entry left).
    this.expiries.dropLast(lease)
    this.free(lease)
    this.guard.release(dropped, Math.max(0, now - acquiredAt))
    return { released: 1, reclaimed }
  }

  /** Renews every held id of `ids` at `now`. */
  renew(now: number, ids: ReadonlyArray<string>): Renewed {
    const reclaimed = this.sweep(now)
    const live: Array<string> = []
    const gone: Array<string> = []
    const deadline = now + this.ttlMs
    for (const id of ids) {
      const lease = this.find(id)
      if (lease === undefined) {
        gone.push(id)
      } else {
        if (lease.expiresAt !== deadline) {
          lease.expiresAt = deadline
          this.queue(lease, deadline)
        }
        live.push(id)
      }
    }
    return { live, gone, deadline, reclaimed }
  }
}

/**
 * The outcome of an acquire: under the caller's `id`, an `Acquired`; under a minted id (`id` undefined),
 * an `Admitted` naming `leaseId` ("" when nothing is held).
 */
const outcome = (
  decision: DecisionData,
  axis: AdmissionAxis,
  expiresAt: number,
  reclaimed: ReadonlyArray<string>,
  id: string | undefined,
  leaseId: string
): Acquired | Admitted =>
  id === undefined ? { decision, axis, expiresAt, reclaimed, leaseId } : { decision, axis, expiresAt, reclaimed }
