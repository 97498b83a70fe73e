/**
 * Fair-escrow policies through the one front on the Memory and Redis doors (a real `redis-server`), under
 * `TestClock`: random scenarios (test/support/fairEscrow.ts) replayed through `RateLimiter.check` decide as
 * the engine does (a `fairEscrow` policy's tenants live in the serving process on both doors, as on the
 * core's server), and a `federatedFairEscrow` policy on Redis (its pool in Redis, one region alone) keeps
 * the properties: a window never admits past its limit, and a tenant asking within its guarantee after
 * every tenant joined is never denied. checkMany, peek and forecast are not served (as on the core).
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as fc from "fast-check"
import type { DecisionData } from "../../src/Decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { FairPolicy } from "../../src/Policy.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import { TestRedis, testRedisLayer } from "../redis/harness.js"
import { type FairScenario, fairScenario, followScenario, replayEscrow } from "../support/fairEscrow.js"

const START = 1_700_000_000_000

const fairPolicy = (scenario: FairScenario, federation?: FairPolicy["federation"]): FairPolicy => ({
  kind: "fair",
  name: "fair",
  prefix: "fair",
  maxKeys: 100,
  fairEscrow: { limit: scenario.limit, windowMs: scenario.windowMs, weights: scenario.weights },
  ...(federation === undefined ? {} : { federation })
})

/** Replays `scenario` through `limiter` on `TestClock`, from the window-aligned START. */
const replay = (limiter: RateLimiterService, scenario: FairScenario) =>
  Effect.gen(function*() {
    const aligned = START - (START % scenario.windowMs)
    const decisions: Array<DecisionData> = []
    for (const op of scenario.ops) {
      yield* TestClock.setTime(aligned + op.offset)
      decisions.push({ ...(yield* limiter.check("fair", op.tenant, op.cost)) })
    }
    return followScenario(scenario, aligned, decisions)
  })

const sample = (runs: number, seed: number) => fc.sample(fairScenario, { numRuns: runs, seed })

// The scenarios ask costs up to 6 of limits from 4: they replay the contract's decisions, so the fronts
// are built with `overCapacity: "deny"` (a cost above the limit reaches the escrow, is denied there and
// has its tenant join, as on the core). The default front refuses it first (the last test below).

describe("fair escrow on the Memory door", () => {
  it.scoped("decides as the engine, scenario for scenario", () =>
    Effect.gen(function*() {
      for (const scenario of sample(60, 7)) {
        const limiter = yield* MemoryBackend.make({ policies: [fairPolicy(scenario)], overCapacity: "deny" })
        const steps = yield* replay(limiter, scenario)
        expect(steps.map((s) => s.decision)).toEqual(replayEscrow(scenario, START).map((s) => s.decision))
      }
    }))

  it.scoped("a federated policy (in-process pool) keeps the properties", () =>
    Effect.gen(function*() {
      for (const scenario of sample(60, 8)) {
        const limiter = yield* MemoryBackend.make({
          policies: [fairPolicy(scenario, { region: "solo", key: "fair", prefix: "tk:rfp" })],
          overCapacity: "deny"
        })
        for (const step of yield* replay(limiter, scenario)) {
          expect(step.windowTotal).toBeLessThanOrEqual(scenario.limit)
          if (step.joinedAll && step.withinGuarantee) expect(step.decision.allowed).toBe(true)
        }
      }
    }))

  it.scoped("serves check only: checkMany, peek and forecast are OperationNotSupported", () =>
    Effect.gen(function*() {
      const [scenario] = sample(1, 9)
      const limiter = yield* MemoryBackend.make({ policies: [fairPolicy(scenario!)] })
      expect(yield* Effect.flip(limiter.checkMany("fair", ["a"]))).toMatchObject({ _tag: "OperationNotSupported" })
      expect(yield* Effect.flip(limiter.peek("fair", "a"))).toMatchObject({ _tag: "OperationNotSupported" })
      expect(yield* Effect.flip(limiter.forecast("fair", "a"))).toMatchObject({ _tag: "OperationNotSupported" })
      expect(yield* Effect.flip(limiter.debit("fair", "a"))).toMatchObject({ _tag: "OperationNotSupported" })
      expect(yield* Effect.flip(limiter.check("fair", "a", 0))).toMatchObject({ _tag: "InvalidArgument" })
      expect(yield* limiter.resolve("fair", "check")).toBe(true)
    }))

  it.scoped("by default a cost above the window's budget is CapacityExceeded, and the tenant does not join", () =>
    Effect.gen(function*() {
      const limiter = yield* MemoryBackend.make({
        policies: [{
          kind: "fair",
          name: "fair",
          prefix: "fair",
          maxKeys: 100,
          fairEscrow: { limit: 6, windowMs: 60_000, weights: {} }
        }]
      })
      expect(yield* Effect.flip(limiter.check("fair", "b", 7))).toMatchObject({
        _tag: "CapacityExceeded",
        policy: "fair",
        key: "b",
        cost: 7,
        capacity: 6
      })
      // b never joined: a, alone, is guaranteed the whole budget.
      const whole = yield* limiter.check("fair", "a", 6)
      expect([whole.allowed, whole.limit, whole.remaining]).toEqual([true, 6, 0])
    }))
})

describe("fair escrow on the Redis door", () => {
  layer(testRedisLayer())((it) => {
    it.scoped("decides as the engine (tenants in this process, as on the core's server)", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        for (const scenario of sample(20, 11)) {
          const limiter = yield* RedisBackend.make({
            policies: [fairPolicy(scenario)],
            redis: env.url,
            clock: "effect",
            overCapacity: "deny"
          })
          const steps = yield* replay(limiter, scenario)
          expect(steps.map((s) => s.decision)).toEqual(replayEscrow(scenario, START).map((s) => s.decision))
        }
      }))

    it.scoped("a federated policy (pool in Redis) keeps the properties, and leaves the core's pool hash", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        let n = 0
        for (const scenario of sample(30, 12)) {
          const prefix = `${env.ns}:rfp${n++}`
          const limiter = yield* RedisBackend.make({
            policies: [fairPolicy(scenario, { region: "eu", key: "fair", prefix })],
            redis: env.url,
            clock: "effect",
            overCapacity: "deny"
          })
          for (const step of yield* replay(limiter, scenario)) {
            expect(step.windowTotal).toBeLessThanOrEqual(scenario.limit)
            if (step.joinedAll && step.withinGuarantee) expect(step.decision.allowed).toBe(true)
          }
          // The pool: ws = the last window's start, w:eu = the region's tenant weight, g:eu = its grant.
          const pool = yield* Effect.promise(() => env.client.hgetall(`${prefix}:fair`))
          const last = scenario.ops[scenario.ops.length - 1]!
          const aligned = START - (START % scenario.windowMs)
          expect(Number(pool["ws"])).toBe(aligned + Math.floor(last.offset / scenario.windowMs) * scenario.windowMs)
          expect(Object.keys(pool).sort()).toEqual(["g:eu", "w:eu", "ws"])
          expect(Number(pool["g:eu"])).toBeLessThanOrEqual(scenario.limit)
        }
      }))
  })
})
