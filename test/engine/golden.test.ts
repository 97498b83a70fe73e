/**
 * Replays every golden suite (CONTRACT.md §6) through the pure engine on a fresh state and asserts each
 * expected Decision field for field.
 */
import { describe, expect, it } from "@effect/vitest"
import { rateEngine } from "../../src/engine/index.js"
import { LeaseSpender, NeedsRefresh } from "../../src/engine/leaseSpender.js"
import * as TokenBudget from "../../src/engine/tokenBudget.js"
import { goldenSuites, toStrategy } from "../support/golden.js"

const suites = goldenSuites()

describe("golden vectors: engine", () => {
  it("has the suites of every primitive", () => {
    expect(suites.rateLimit.length).toBeGreaterThan(0)
    expect(suites.tokenBudget.length).toBeGreaterThan(0)
    expect(suites.lease.length).toBeGreaterThan(0)
  })

  describe("rateLimit", () => {
    it.each(suites.rateLimit.map((suite) => [suite.name, suite] as const))("%s", (_name, suite) => {
      const engine = rateEngine(toStrategy(suite.strategy))
      let state: unknown = undefined
      suite.ops.forEach((op, index) => {
        const step = engine.check(state, op.now, op.cost)
        expect({ op: index, decision: step.decision }).toEqual({ op: index, decision: op.expect })
        if (!step.decision.allowed) expect(step.state).toBe(state)
        state = step.state
      })
    })
  })

  it("reads a quota as the core writes its options (no suite has one yet), with the core's defaults", () => {
    expect(toStrategy({ kind: "quota", options: { limit: 5, resetCadence: "calendar-week" } })).toEqual({
      kind: "quota",
      resetCadence: "calendar-week",
      limit: 5,
      offsetMinutes: 0,
      weekStartsOn: 1
    })
    expect(toStrategy({ kind: "quota", options: { limit: 5, resetCadence: "rolling", periodMs: 60_000 } })).toEqual({
      kind: "quota",
      resetCadence: "rolling",
      limit: 5,
      periodMs: 60_000,
      buckets: 10
    })
    expect(toStrategy({ kind: "quota", options: { limit: 5, resetCadence: "fixed", periodMs: 1000, anchor: 7 } }))
      .toEqual({ kind: "quota", resetCadence: "fixed", limit: 5, periodMs: 1000, anchor: 7 })
  })

  describe("tokenBudget", () => {
    it.each(suites.tokenBudget.map((suite) => [suite.name, suite] as const))("%s", (_name, suite) => {
      const engine = TokenBudget.make(suite.options)
      let state: TokenBudget.State | undefined = undefined
      suite.ops.forEach((op, index) => {
        const step = engine.debit(state, op.now, op.tokens)
        expect({ op: index, decision: step.decision }).toEqual({ op: index, decision: op.expect })
        if (!step.decision.allowed) expect(step.state).toBe(state)
        state = step.state
      })
    })
  })

  describe("lease", () => {
    it.each(suites.lease.map((suite) => [suite.name, suite] as const))("%s", (_name, suite) => {
      const spender = new LeaseSpender({ limit: suite.limit, ttlMs: suite.ttlMs, windowCoupled: suite.windowCoupled })
      suite.events.forEach((event, index) => {
        if (event.op === "grant") {
          spender.grant(event.capacity, event.expiresAt)
          return
        }
        const result = spender.spend(event.now, event.cost)
        if (event.expect.needsRefresh) {
          expect({ event: index, result }).toEqual({ event: index, result: NeedsRefresh })
        } else {
          expect({ event: index, result }).toEqual({ event: index, result: event.expect.decision })
        }
      })
    })
  })
})
