/**
 * The engine's admission keeps its lease expiries in a queue (so a sweep touches only lapsed leases).
 * Against the plain definition — scan every held lease, reclaim those whose expiry is at or before now —
 * it must answer the same to every acquire, release and renewal, whatever the order of ops, with time
 * moving forward, standing still or stepping back, and with many leases held and renewed; under the
 * caller's ids (`acquire`) and under ids the lease table mints over their slot (`admit`), where a released
 * or reclaimed id, presented again after its slot holds another lease, must name nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { type Acquired, Admitter } from "../../src/engine/admission.js"
import type { ConcurrencyOptions } from "../../src/engine/concurrency.js"
import { Guard } from "../../src/engine/concurrency.js"
import { slotOfLeaseId } from "../../src/engine/leaseIds.js"
import { type LeaseSlot, LeaseTable } from "../../src/engine/leaseTable.js"
import { pool } from "../reliability/support.js"

const RUNS = Number(process.env["ADMISSION_PROP_RUNS"] ?? 200)

/** The definition: a scan of every held lease on each operation. */
class ScanningAdmitter {
  readonly guard: Guard
  private readonly leases = new Map<string, { readonly acquiredAt: number; expiresAt: number }>()
  constructor(concurrency: ConcurrencyOptions, readonly ttlMs: number) {
    this.guard = new Guard(concurrency)
  }
  sweep(now: number): Array<string> {
    const reclaimed: Array<string> = []
    for (const [id, lease] of this.leases) {
      if (lease.expiresAt > now) continue
      this.leases.delete(id)
      this.guard.release(true, Math.max(0, now - lease.acquiredAt))
      reclaimed.push(id)
    }
    return reclaimed.sort()
  }
  acquire(now: number, id: string) {
    const reclaimed = this.sweep(now)
    if (!this.guard.tryAcquire()) return { held: false, reclaimed, limit: this.guard.limit }
    this.leases.set(id, { acquiredAt: now, expiresAt: now + this.ttlMs })
    return { held: true, reclaimed, limit: this.guard.limit }
  }
  release(now: number, id: string, dropped: boolean) {
    const reclaimed = this.sweep(now)
    const lease = this.leases.get(id)
    if (lease === undefined) return { released: 0, reclaimed }
    this.leases.delete(id)
    this.guard.release(dropped, Math.max(0, now - lease.acquiredAt))
    return { released: 1, reclaimed }
  }
  renew(now: number, ids: ReadonlyArray<string>) {
    const reclaimed = this.sweep(now)
    const live = ids.filter((id) => {
      const lease = this.leases.get(id)
      if (lease !== undefined) lease.expiresAt = now + this.ttlMs
      return lease !== undefined
    })
    return { live, reclaimed }
  }
}

type Op =
  | { readonly _tag: "acquire"; readonly dt: number }
  | {
    readonly _tag: "release"
    readonly dt: number
    readonly pick: number
    readonly dropped: boolean
    /** Release an id held before (released or reclaimed since, or still held) instead of a held one. */
    readonly past: boolean
  }
  | { readonly _tag: "renew"; readonly dt: number; readonly share: number; readonly pastPick: number }

const dtArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: -30, max: -1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 400 }) }
)

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ _tag: fc.constant("acquire" as const), dt: dtArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("release" as const),
      dt: dtArb,
      pick: fc.nat(),
      dropped: fc.boolean(),
      past: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("renew" as const),
      dt: dtArb,
      share: fc.double({ min: 0, max: 1, noNaN: true }),
      pastPick: fc.nat()
    })
  }
)

const concurrencyArb: fc.Arbitrary<ConcurrencyOptions> = fc.integer({ min: 1, max: 60 }).chain((ceiling) =>
  fc.record({
    algorithm: fc.constantFrom("fixed" as const, "aimd" as const, "gradient2" as const),
    minLimit: fc.constant(1),
    maxLimit: fc.constant(ceiling),
    initialLimit: fc.constant(ceiling),
    backoffRatio: fc.constantFrom(0.5, 0.9),
    smoothing: fc.constantFrom(0.2, 1),
    tolerance: fc.constantFrom(1, 2),
    rttWindow: fc.integer({ min: 1, max: 10 })
  }).map((c) => (c.algorithm === "fixed" ? { ...c, minLimit: ceiling } : c))
)

const ids = ["the caller's ids", "minted ids"] as const

describe("engine admission", () => {
  it.each(ids)("answers as the scan-every-lease definition does, op for op, under %s", (kind) => {
    fc.assert(
      fc.property(
        concurrencyArb,
        fc.integer({ min: 5, max: 200 }),
        fc.array(opArb, { maxLength: 400 }),
        (c, ttl, ops) => {
          const fast = new Admitter(c, undefined, ttl)
          const plain = new ScanningAdmitter(c, ttl)
          const held: Array<string> = []
          /** Every id ever held, in order. */
          const past: Array<string> = []
          let now = 1_000_000
          let count = 0
          const acquire = (): { readonly id: string; readonly outcome: Acquired } => {
            if (kind === "the caller's ids") {
              const id = `l${count++}`
              return { id, outcome: fast.acquire(now, id, "k", 1) }
            }
            const outcome = fast.admit(now, "k", 1)
            expect(outcome.leaseId === "").toBe(outcome.axis !== "")
            return { id: outcome.axis === "" ? outcome.leaseId : "denied", outcome }
          }
          for (const op of ops) {
            now += op.dt
            switch (op._tag) {
              case "acquire": {
                const { id, outcome: a } = acquire()
                const b = plain.acquire(now, id)
                expect(a.axis === "", `acquire at ${now}`).toBe(b.held)
                expect(a.reclaimed).toEqual(b.reclaimed)
                expect(a.decision.limit).toBe(b.limit)
                if (b.held) {
                  held.push(id)
                  past.push(id)
                }
                break
              }
              case "release": {
                const id = op.past && past.length > 0
                  ? past[op.pick % past.length]!
                  : held.length === 0
                  ? "none"
                  : held.splice(op.pick % held.length, 1)[0]!
                const a = fast.release(now, id, op.dropped)
                expect(a).toEqual(plain.release(now, id, op.dropped))
                expect(fast.holds(id)).toBe(false)
                break
              }
              case "renew": {
                const ids = held.filter((_, i) => i < Math.ceil(held.length * op.share))
                if (past.length > 0) ids.push(past[op.pastPick % past.length]!)
                const a = fast.renew(now, ids)
                const b = plain.renew(now, ids)
                expect(a.live).toEqual(b.live)
                expect(a.reclaimed).toEqual(b.reclaimed)
                break
              }
            }
            expect(fast.guard.inflight).toBe(plain.guard.inflight)
            expect(fast.guard.limit).toBe(plain.guard.limit)
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  it("keeps its expiry queue bounded when leases come and go", () => {
    const admitter = new Admitter(
      {
        algorithm: "fixed",
        minLimit: 10,
        maxLimit: 10,
        initialLimit: 10,
        backoffRatio: 0.9,
        smoothing: 0.2,
        tolerance: 2,
        rttWindow: 10
      },
      undefined,
      3_600_000
    )
    for (let i = 0; i < 100_000; i++) {
      const id = `l${i}`
      expect(admitter.acquire(i, id, "k", 1).axis).toBe("")
      expect(admitter.release(i, id, false).released).toBe(1)
    }
    expect(admitter.held).toBe(0)
    expect(admitter.queued).toBeLessThanOrEqual(64 + 2)
  })

  it("routes a minted id to the admitter holding it in a shared table, and an old id to nothing", () => {
    const ceilingOfTwo = pool("two", 2).concurrency
    const table = new LeaseTable<Admitter>()
    const first = new Admitter(ceilingOfTwo, undefined, 1000, undefined, table)
    const second = new Admitter(ceilingOfTwo, undefined, 1000, undefined, table)
    const a = first.admit(0, "k", 1)
    const b = second.admit(0, "k", 1)
    expect([a.axis, b.axis]).toEqual(["", ""])
    expect([table.ownerOf(a.leaseId), table.ownerOf(b.leaseId)]).toEqual([first, second])
    // An admitter holds only its own leases: the other's id releases nothing there.
    expect(first.release(1, b.leaseId, false).released).toBe(0)
    expect(second.holds(b.leaseId)).toBe(true)
    // A caller's id lives beside the minted ones, found only by its admitter.
    expect(first.acquire(1, "mine", "k", 1).axis).toBe("")
    expect([first.holds("mine"), second.holds("mine"), table.ownerOf("mine")]).toEqual([true, false, undefined])

    // Released, a's slot is the next one taken: the new lease's id names the same slot, a's names nothing.
    expect(first.release(2, a.leaseId, false).released).toBe(1)
    const c = second.admit(2, "k", 1)
    expect(c.axis).toBe("")
    expect(slotOfLeaseId(c.leaseId)).toBe(slotOfLeaseId(a.leaseId))
    expect(c.leaseId).not.toBe(a.leaseId)
    expect(table.ownerOf(a.leaseId)).toBeUndefined()
    expect(first.release(3, a.leaseId, true)).toEqual({ released: 0, reclaimed: [] })
    expect(second.release(3, a.leaseId, true)).toEqual({ released: 0, reclaimed: [] })
    expect(second.renew(3, [a.leaseId, c.leaseId])).toEqual({
      live: [c.leaseId],
      gone: [a.leaseId],
      deadline: 1003,
      reclaimed: []
    })
    expect([first.held, second.held, second.guard.inflight]).toEqual([1, 2, 2])
    // Reclaimed at their TTL, by the admitter that holds them, named by their ids.
    expect(first.sweep(1001)).toEqual(["mine"])
    expect(second.sweep(1003)).toEqual([b.leaseId, c.leaseId].sort())
    expect(table.capacity).toBe(3)
  })

  it("finds every held lease by its id and no released one, through bursts that grow and shrink the table", () => {
    // Bursts of takes then of releases, thousands at a time, so that the table trims its free end.
    const burst = fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 3000 }), fc.nat())
    fc.assert(
      fc.property(fc.array(burst, { maxLength: 12 }), (bursts) => {
        const table = new LeaseTable<string>()
        const held: Array<LeaseSlot<string>> = []
        let peak = 0
        for (const [take, size, pick] of bursts) {
          const released: Array<string> = []
          for (let i = 0; i < size; i++) {
            if (take || held.length === 0) {
              held.push(table.take("owner", 0, 1))
              peak = Math.max(peak, held.length)
            } else {
              const [lease] = held.splice((pick + i * 7919) % held.length, 1)
              released.push(lease!.id)
              table.release(lease!)
            }
          }
          const slots = held.map((lease) => lease.slot)
          expect(new Set(slots).size).toBe(held.length)
          expect(table.capacity).toBeGreaterThan(held.length === 0 ? -1 : Math.max(...slots))
          expect(table.capacity).toBeLessThanOrEqual(peak)
          for (const lease of held) expect(table.find(lease.id)).toBe(lease)
          for (const id of released) expect(table.find(id)).toBeUndefined()
        }
      }),
      { numRuns: Math.ceil(RUNS / 10) }
    )
  })

  it("gives its slots back once drained after a burst, and keeps a few free slots for the next leases", () => {
    const table = new LeaseTable<string>()
    const take = () => table.take("owner", 0, 1)
    const [first, ...rest] = Array.from({ length: 5000 }, take)
    expect(table.capacity).toBe(5000)
    // Released first to last, so the end is freed last: then all but the first slot leave the table.
    for (const lease of rest) table.release(lease)
    expect(table.capacity).toBe(1)
    // The free list still names the slots that left: the table grows again without handing any out twice.
    const again = Array.from({ length: 5000 }, take)
    expect(new Set([first!, ...again].map((lease) => lease.slot)).size).toBe(5001)
    expect(table.capacity).toBe(5001)
    for (const lease of [first!, ...again]) table.release(lease)
    expect(table.capacity).toBe(0)
    // A few leases coming and going keep their slots.
    const few = Array.from({ length: 100 }, take)
    for (const lease of few) table.release(lease)
    expect(table.capacity).toBe(100)
    expect(take().slot).toBe(99)
  })

  it("mints 40 lowercase hex characters that give their slot back, and reads no other string as a slot", () => {
    const table = new LeaseTable<string>()
    const leases = Array.from({ length: 300 }, (_, i) => table.take("owner", i, i + 1))
    for (const lease of leases) {
      expect(lease.id).toMatch(/^[0-9a-f]{40}$/)
      expect(slotOfLeaseId(lease.id)).toBe(lease.slot)
      expect(table.find(lease.id)).toBe(lease)
    }
    const id = leases[7]!.id
    for (const other of [id.toUpperCase(), id.slice(1), `${id}0`, ` ${id.slice(1)}`, `g${id.slice(1)}`, ""]) {
      expect(slotOfLeaseId(other)).toBe(-1)
      expect(table.find(other)).toBeUndefined()
    }
  })
})
