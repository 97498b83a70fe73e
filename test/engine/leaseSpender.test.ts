/**
 * The lease spender beyond the golden suites: usage errors, refusals, coupling, and a model-based
 * property (never spends more than was granted; window-coupled credits never outlive their window).
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { isDecision, LeaseSpender, NeedsRefresh } from "../../src/engine/leaseSpender.js"

const coupled = () => new LeaseSpender({ limit: 10, ttlMs: 1000, windowCoupled: true })

describe("LeaseSpender", () => {
  it("needs a refresh before any grant", () => {
    const spender = coupled()
    expect(spender.spend(0, 1)).toBe(NeedsRefresh)
    expect(spender.credits).toBe(0)
    expect(spender.expiresAt).toBeUndefined()
  })

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])(
    "answers InvalidCost for cost %s and changes nothing",
    (cost) => {
      const spender = coupled()
      spender.grant(5, 1000)
      const result = spender.spend(0, cost)
      expect(isDecision(result)).toBe(false)
      expect(result).toMatchObject({ _tag: "InvalidCost" })
      expect(spender.credits).toBe(5)
    }
  )

  it("spends fractional costs and reports whole remaining credits", () => {
    const spender = coupled()
    spender.grant(2, 1000)
    expect(spender.spend(0, 0.5)).toEqual({ allowed: true, limit: 10, remaining: 1, resetAt: 1000, retryAfterMs: 0 })
    expect(spender.credits).toBe(1.5)
  })

  it("turns a refused grant into the server's denial without touching the credits", () => {
    const spender = coupled()
    spender.grant(3, 1000)
    expect(spender.refuse(2000, 750)).toEqual({
      allowed: false,
      limit: 10,
      remaining: 0,
      resetAt: 2000,
      retryAfterMs: 750
    })
    expect(spender.credits).toBe(3)
    expect(spender.expiresAt).toBe(1000)
  })

  it("a zero-capacity grant adds nothing but adopts the boundary", () => {
    const spender = coupled()
    spender.grant(0, 5000)
    expect(spender.credits).toBe(0)
    expect(spender.expiresAt).toBe(5000)
    expect(spender.spend(0, 1)).toBe(NeedsRefresh)
  })

  it("discards window-coupled credits at the boundary instant, keeps uncoupled ones", () => {
    const a = coupled()
    a.grant(5, 1000)
    expect(isDecision(a.spend(999, 1))).toBe(true)
    expect(a.spend(1000, 1)).toBe(NeedsRefresh)
    expect(a.credits).toBe(0)

    const b = new LeaseSpender({ limit: 10, ttlMs: 1000, windowCoupled: false })
    b.grant(5, 1000)
    expect(b.spend(5000, 5)).toEqual({ allowed: true, limit: 10, remaining: 0, resetAt: 1000, retryAfterMs: 0 })
  })

  it("never spends more than granted, and coupled credits never outlive their window", () => {
    type Event =
      | { readonly op: "grant"; readonly capacity: number; readonly windows: number }
      | { readonly op: "spend"; readonly dt: number; readonly cost: number }
    const event: fc.Arbitrary<Event> = fc.oneof(
      fc.record({
        op: fc.constant("grant" as const),
        capacity: fc.integer({ min: 0, max: 20 }),
        windows: fc.integer({ min: 1, max: 2 })
      }),
      fc.record({
        op: fc.constant("spend" as const),
        dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1500 })),
        cost: fc.integer({ min: 1, max: 8 })
      })
    )
    fc.assert(
      fc.property(fc.boolean(), fc.array(event, { maxLength: 80 }), (windowCoupled, events) => {
        const windowMs = 1000
        const spender = new LeaseSpender({ limit: 20, ttlMs: windowMs, windowCoupled })
        let now = 0
        let model = 0 // credits the contract says are held
        let expiry: number | undefined
        let granted = 0
        let spent = 0
        for (const e of events) {
          if (e.op === "grant") {
            expiry = (Math.floor(now / windowMs) + e.windows) * windowMs
            spender.grant(e.capacity, expiry)
            model += e.capacity
            granted += e.capacity
            continue
          }
          now += e.dt
          if (windowCoupled && model > 0 && expiry !== undefined && now >= expiry) model = 0
          const result = spender.spend(now, e.cost)
          if (model >= e.cost) {
            model -= e.cost
            spent += e.cost
            expect(result).toEqual({
              allowed: true,
              limit: 20,
              remaining: model,
              resetAt: expiry ?? now + windowMs,
              retryAfterMs: 0
            })
          } else {
            expect(result).toBe(NeedsRefresh)
          }
          expect(spender.credits).toBe(model)
          expect(spent).toBeLessThanOrEqual(granted)
        }
      }),
      { numRuns: 300 }
    )
  })
})
