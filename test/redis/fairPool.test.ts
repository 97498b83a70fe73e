/**
 * The core-wire scripts of the federated policies, in a real Redis with explicit `now`:
 * - `regionFairPool.grant` answers what the engine's `RegionPool` answers, grant for grant, over random
 *   regions, weights (fractional too) and windows, and leaves the core's hash (`ws`, `w:<region>`,
 *   `g:<region>`, expiring at the window's end); `release` removes a region, `stats` reads the hash.
 * - `federated.lease` keeps the core coordinator's hash (`budget`, `expiresAt`) and replies
 *   `{granted, expiresAt}`.
 * - Both take the core's ARGV without the fence (what a core client sends) and with it.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { RegionPool } from "../../src/engine/fairEscrow.js"
import { evalArgs } from "../../src/redis/ScriptRunner.js"
import { call, script, TestRedis, testRedisLayer, transaction } from "./harness.js"

const W = 1000
const T0 = 1_700_000_000_000

describe("region pool and federated lease scripts", () => {
  layer(testRedisLayer())((it) => {
    it.effect("regionFairPool.grant answers as the engine's pool, grant for grant", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const op = fc.record({
          region: fc.constantFrom("us", "eu", "ap"),
          weight: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(0.5, 1.5, 2.25)),
          want: fc.integer({ min: 0, max: 40 }),
          at: fc.integer({ min: 0, max: 2 * W + 500 })
        })
        const cases = fc.sample(fc.tuple(fc.integer({ min: 1, max: 30 }), fc.array(op, { maxLength: 25 })), {
          numRuns: 60,
          seed: 3
        })
        let n = 0
        for (const [limit, ops] of cases) {
          const key = `${env.ns}:pool${n++}`
          const pool = new RegionPool(limit, W)
          const sorted = [...ops].sort((a, b) => a.at - b.at)
          for (const { at, region, want, weight } of sorted) {
            const grant = yield* call(env, "regionFairPool.grant", { pool: key }, {
              now: T0 + at,
              windowMs: W,
              limit,
              region,
              weight,
              wantTotal: want
            })
            const [reply] = yield* transaction(env, [grant])
            expect(reply).toBe(pool.grant(region, weight, want, T0 + at))
          }
        }
      }))

    it.effect("regionFairPool keeps the core's hash; release and stats", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:layout`
        const grant = (region: string, weight: number, want: number, now: number) =>
          Effect.flatMap(
            call(env, "regionFairPool.grant", { pool: key }, {
              now,
              windowMs: W,
              limit: 12,
              region,
              weight,
              wantTotal: want
            }),
            (c) => Effect.map(transaction(env, [c]), ([reply]) => reply)
          )
        expect(yield* grant("us", 3, 12, T0 + 10)).toBe(12)
        expect(yield* grant("eu", 1.5, 4, T0 + 20)).toBe(0)
        const hash = yield* Effect.promise(() => env.client.hgetall(key))
        expect(hash).toEqual({ ws: String(T0), "w:us": "3", "g:us": "12", "w:eu": "1.5", "g:eu": "0" })
        const ttl = yield* Effect.promise(() => env.client.pttl(key))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(W - 20)
        // The core's client sends no fence: the same bytes run with the wire's ARGV alone.
        const stats = script(env, "regionFairPool.stats")
        expect(yield* Effect.promise(() => env.client.eval(stats.text, 1, key))).toEqual([
          "ws",
          String(T0),
          "w:us",
          "3",
          "g:us",
          "12",
          "w:eu",
          "1.5",
          "g:eu",
          "0"
        ])
        const release = script(env, "regionFairPool.release")
        expect(yield* Effect.promise(() => env.client.eval(release.text, 1, key, T0 + 30, W, "us"))).toBe(0)
        expect(yield* Effect.promise(() => env.client.hgetall(key))).toEqual({
          ws: String(T0),
          "w:eu": "1.5",
          "g:eu": "0"
        })
        const granted = script(env, "regionFairPool.grant")
        expect(yield* Effect.promise(() => env.client.eval(granted.text, 1, key, T0 + 40, W, 12, "eu", 1.5, 12))).toBe(
          12
        )
      }))

    it.effect("federated.lease keeps the core coordinator's hash and replies {granted, expiresAt}", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:fed:api`
        const lease = script(env, "federated.lease")
        const send = (now: number, tokens: number) =>
          Effect.promise(() => env.client.eval(lease.text, 1, key, now, tokens, W, 10))
        expect(yield* send(T0 + 100, 4)).toEqual([4, T0 + W])
        expect(yield* Effect.promise(() => env.client.hgetall(key))).toEqual({ budget: "6", expiresAt: String(T0 + W) })
        expect(yield* send(T0 + 200, 8)).toEqual([6, T0 + W])
        expect(yield* send(T0 + 300, 1)).toEqual([0, T0 + W])
        const ttl = yield* Effect.promise(() => env.client.pttl(key))
        expect(ttl).toBeLessThanOrEqual(W - 300)
        // A new window starts from the budget again; the runner's call (with its fence) runs the same.
        const c = yield* call(env, "federated.lease", { key }, { now: T0 + W + 1, tokens: 3, windowMs: W, budget: 10 })
        expect(yield* Effect.promise(() => env.client.eval(c.script.text, ...evalArgs(c)))).toEqual([3, T0 + 2 * W])
        expect(yield* Effect.promise(() => env.client.hgetall(key))).toEqual({
          budget: "7",
          expiresAt: String(T0 + 2 * W)
        })
      }))
  })
})
