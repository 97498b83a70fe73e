/**
 * The Redis door's check hot path: the prebuilt call template sends exactly the arguments marshalling by
 * name would, and the commands of one tick, which leave the process in one corked write, each get their
 * own answer (nothing lost, nothing counted twice), also when Redis's script cache was flushed.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import * as CallTemplate from "../../src/redis/CallTemplate.js"
import { evalArgs } from "../../src/redis/ScriptRunner.js"
import { scriptsOf } from "../../src/redis/StrategyScripts.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const strategies: ReadonlyArray<LimiterPolicy["strategy"]> = [
  { kind: "gcra", limit: 7, periodMs: 1000, burst: 3 },
  { kind: "tokenBucket", capacity: 9, refillPerSec: 2.5 },
  { kind: "fixedWindow", limit: 11, windowMs: 60_000 },
  { kind: "slidingWindow", limit: 13, windowMs: 30_000, buckets: 6 },
  { kind: "slidingWindowLog", limit: 5, windowMs: 10_000 },
  { kind: "quota", resetCadence: "calendar-week", limit: 1_000_000, offsetMinutes: -300, weekStartsOn: 0 },
  { kind: "quota", resetCadence: "fixed", limit: 3, periodMs: 86_400_000, anchor: -3_600_000 },
  { kind: "quota", resetCadence: "rolling", limit: 4, periodMs: 60_000, buckets: 6 }
]

describe("Redis check hot path", () => {
  layer(testRedisLayer())((it) => {
    it.effect("the call template sends exactly what marshalling by name sends, for every strategy", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        let templated = 0
        for (const strategy of strategies) {
          const { params, strategy: kind } = scriptsOf(strategy)
          const script = env.catalog.find(kind, "check")
          expect(script, `${kind}.check`).toBeDefined()
          if (script === undefined) continue
          const template = yield* CallTemplate.make(script, params)
          if (template === undefined) continue
          templated++
          for (const [now, cost] of [[0, 1], [1_800_000_000_123, 7], [42, 9_007_199_254_740_991]] as const) {
            const byName = yield* env.runner.prepare(script, { key: "p:k", block: "{p:k}:block" }, {
              ...params,
              now,
              cost
            })
            expect(template.args("p:k", now, cost)).toEqual(evalArgs(byName))
          }
        }
        // Every contract check script has the template's shape; a manifest change that breaks it shows here.
        expect(templated).toBe(strategies.length)
      }))

    it.scoped("300 checks issued in one tick on a limit of 100: exactly 100 allowed, each with its own answer", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const policy: LimiterPolicy = {
          kind: "limiter",
          name: "burst",
          prefix: `${env.ns}:burst`,
          maxKeys: 10,
          strategy: { kind: "fixedWindow", limit: 100, windowMs: LONG_WINDOW_MS }
        }
        const limiter = yield* RedisBackend.make({ policies: [policy], redis: env.url })
        const decisions = yield* Effect.all(
          Array.from({ length: 300 }, () => limiter.check("burst", "k")),
          { concurrency: "unbounded" }
        )
        expect(decisions.filter((d) => d.allowed)).toHaveLength(100)
        // Each allowed answer saw a different count: remaining runs 99..0 once each.
        const remaining = decisions.filter((d) => d.allowed).map((d) => d.remaining).sort((a, b) => a - b)
        expect(remaining).toEqual(Array.from({ length: 100 }, (_, i) => i))
        expect(yield* Effect.promise(() => env.client.hget(`${env.ns}:burst:k`, "c"))).toBe("100")
      }))

    it.scoped("after SCRIPT FLUSH, a tick's worth of checks falls back to EVAL and counts each once", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const policy: LimiterPolicy = {
          kind: "limiter",
          name: "flushed",
          prefix: `${env.ns}:flushed`,
          maxKeys: 10,
          strategy: { kind: "fixedWindow", limit: 1000, windowMs: LONG_WINDOW_MS }
        }
        const limiter = yield* RedisBackend.make({ policies: [policy], redis: env.url })
        yield* limiter.check("flushed", "k")
        yield* Effect.promise(() => env.client.script("FLUSH"))
        const decisions = yield* Effect.all(
          Array.from({ length: 50 }, () => limiter.check("flushed", "k")),
          { concurrency: "unbounded" }
        )
        expect(decisions.every((d) => d.allowed)).toBe(true)
        expect(yield* Effect.promise(() => env.client.hget(`${env.ns}:flushed:k`, "c"))).toBe("51")
      }))
  })
})
