/**
 * The engine's admission keeps its lease expiries in a queue (so a sweep touches only lapsed leases).
 * Against the plain definition — scan every held lease, reclaim those whose expiry is at or before now —
 * it must answer the same to every acquire, release and renewal, whatever the order of ops, with time
 * moving forward, standing still or stepping back, and with many leases held and renewed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Admitter } from "../../src/engine/admission.js"
import type { ConcurrencyOptions } from "../../src/engine/concurrency.js"
import { Guard } from "../../src/engine/concurrency.js"

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
  | { readonly _tag: "release"; readonly dt: number; readonly pick: number; readonly dropped: boolean }
  | { readonly _tag: "renew"; readonly dt: number; readonly share: number }

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
      dropped: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("renew" as const),
      dt: dtArb,
      share: fc.double({ min: 0, max: 1, noNaN: true })
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

describe("engine admission", () => {
  it("answers as the scan-every-lease definition does, op for op", () => {
    fc.assert(
      fc.property(
        concurrencyArb,
        fc.integer({ min: 5, max: 200 }),
        fc.array(opArb, { maxLength: 400 }),
        (c, ttl, ops) => {
          const fast = new Admitter(c, undefined, ttl)
          const plain = new ScanningAdmitter(c, ttl)
          const held: Array<string> = []
          let now = 1_000_000
          let minted = 0
          for (const op of ops) {
            now += op.dt
            switch (op._tag) {
              case "acquire": {
                const id = `l${minted++}`
                const a = fast.acquire(now, id, "k", 1)
                const b = plain.acquire(now, id)
                expect(a.axis === "", `acquire at ${now}`).toBe(b.held)
                expect(a.reclaimed).toEqual(b.reclaimed)
                expect(a.decision.limit).toBe(b.limit)
                if (b.held) held.push(id)
                break
              }
              case "release": {
                const id = held.length === 0 ? "none" : held.splice(op.pick % held.length, 1)[0]!
                const a = fast.release(now, id, op.dropped)
                expect(a).toEqual(plain.release(now, id, op.dropped))
                break
              }
              case "renew": {
                const ids = held.filter((_, i) => i < Math.ceil(held.length * op.share))
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
})
