/**
 * The golden vectors replayed through the Memory door, with `TestClock` set to each op's `now`: the
 * service path (validation, key tables, Clock) must give the engine's exact decisions. The engine alone
 * is replayed in `test/engine/golden.test.ts`, and the Lua in `test/redis`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { Decision } from "../src/Decision.js"
import type { RateLimiterError } from "../src/Errors.js"
import * as MemoryBackend from "../src/layers/MemoryBackend.js"
import type { Policy } from "../src/Policy.js"
import { RateLimiter } from "../src/services/RateLimiter.js"
import { goldenSuites, toStrategy } from "./support/golden.js"

const suites = goldenSuites()

/** Runs each op at its `now` on a fresh Memory door serving only `policy`; returns the plain decisions. */
const replay = <Op extends { readonly now: number }>(
  policy: Policy,
  ops: ReadonlyArray<Op>,
  step: (limiter: RateLimiter["Type"], op: Op) => Effect.Effect<Decision, RateLimiterError>
) =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const decisions: Array<object> = []
    for (const op of ops) {
      yield* TestClock.setTime(op.now)
      decisions.push({ ...(yield* step(limiter, op)) })
    }
    return decisions
  }).pipe(Effect.provide(MemoryBackend.layer({ policies: [policy] })))

describe("golden vectors through MemoryBackend", () => {
  for (const suite of suites.rateLimit) {
    it.effect(`rateLimit ${suite.name}`, () =>
      Effect.gen(function*() {
        const policy: Policy = {
          kind: "limiter",
          name: "golden",
          prefix: "",
          maxKeys: 100,
          strategy: toStrategy(suite.strategy)
        }
        const decisions = yield* replay(policy, suite.ops, (limiter, op) => limiter.check("golden", suite.key, op.cost))
        expect(decisions).toEqual(suite.ops.map((op) => op.expect))
      }))
  }

  for (const suite of suites.tokenBudget) {
    it.effect(`tokenBudget ${suite.name}`, () =>
      Effect.gen(function*() {
        const policy: Policy = {
          kind: "meter",
          name: "golden",
          prefix: "",
          maxKeys: 100,
          budget: suite.options.budget,
          windowMs: suite.options.windowMs,
          shared: false
        }
        const decisions = yield* replay(policy, suite.ops, (limiter, op) => limiter.debit("golden", "k", op.tokens))
        expect(decisions).toEqual(suite.ops.map((op) => op.expect))
      }))
  }
})
