/**
 * slidingWindowLog when the clock steps back: a key whose entries lie after `now` (a server whose clock
 * was set back, or callers whose explicit `now` disagree). Found by differential fuzzing against the
 * reference ThrottleKit script: with cost 0 our check reported `resetAt` from `now`, the reference from
 * the oldest stored entry, while both left the same state. The rule on the wire: an allowed check's
 * `resetAt` is `ceil(oldest entry + windowMs)` taken after adding `cost` entries of score `now`, so `now`
 * bounds it only when something is added.
 *
 * The contract's check script runs directly in a real Redis (our API refuses cost 0, the wire does not),
 * beside the engine on the same state; the expectation is the wire's rule, written here on its own.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import type { DecisionData } from "../../src/Decision.js"
import * as Engine from "../../src/engine/index.js"
import { decisionOf } from "../../src/redis/Replies.js"
import { call, type RedisEnv, TestRedis, testRedisLayer, transaction } from "./harness.js"

const windowMs = 60_000
const limit = 5
/** When the seeded entries were stamped; the later checks run before it. */
const stamped = 1_700_000_000_123

/** The wire's `resetAt` of an allowed check: the oldest entry once `cost` entries at `now` are added. */
const wireResetAt = (scores: ReadonlyArray<number>, now: number, cost: number): number => {
  const after = cost > 0 ? [...scores, now] : scores
  return Math.ceil((after.length === 0 ? now : Math.min(...after)) + windowMs)
}

/** One check of the contract's script at `now` (no fence: the wire's four ARGV after `now`). */
const check = (env: RedisEnv, key: string, now: number, cost: number) =>
  Effect.flatMap(
    call(env, "slidingWindowLog.check", { key }, { now, windowMs, limit, cost }),
    (step) => Effect.flatMap(transaction(env, [step]), ([reply]) => decisionOf(reply!))
  )

/** The scores stored at `key`, ascending. */
const scoresAt = (env: RedisEnv, key: string) =>
  Effect.map(
    Effect.promise(() => env.client.zrange(key, 0, -1, "WITHSCORES")),
    (flat) => flat.filter((_, i) => i % 2 === 1).map(Number)
  )

/** The engine's decision on the stored scores. */
const engineDecision = (scores: ReadonlyArray<number>, now: number, cost: number): DecisionData =>
  Engine.slidingWindowLog.make({ limit, windowMs }).check(
    Engine.slidingWindowLog.fromScores(scores, now + windowMs),
    now,
    cost
  ).decision

describe("slidingWindowLog check with entries after now (clock stepped back)", () => {
  layer(testRedisLayer())((it) => {
    it.effect("cost 0 reports resetAt from the oldest entry, not from now, and writes nothing", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:swl-back:cost0`
        yield* check(env, key, stamped, 3)
        const seeded = yield* scoresAt(env, key)
        expect(seeded).toEqual([stamped, stamped, stamped])

        const now = stamped - 400
        const decision = yield* check(env, key, now, 0)
        expect(decision).toEqual({
          allowed: true,
          limit,
          remaining: 2,
          resetAt: wireResetAt(seeded, now, 0),
          retryAfterMs: 0
        })
        expect(decision.resetAt).toBe(stamped + windowMs)
        expect(engineDecision(seeded, now, 0)).toEqual(decision)
        expect(yield* scoresAt(env, key)).toEqual(seeded)
      }))

    it.effect("a positive cost adds entries at now, which then bound resetAt", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:swl-back:cost1`
        yield* check(env, key, stamped, 3)
        const seeded = yield* scoresAt(env, key)

        const now = stamped - 400
        const decision = yield* check(env, key, now, 1)
        expect(decision).toEqual({
          allowed: true,
          limit,
          remaining: 1,
          resetAt: wireResetAt(seeded, now, 1),
          retryAfterMs: 0
        })
        expect(decision.resetAt).toBe(now + windowMs)
        expect(engineDecision(seeded, now, 1)).toEqual(decision)
        expect(yield* scoresAt(env, key)).toEqual([now, stamped, stamped, stamped])
      }))

    it.effect("cost 0 on an empty key reports now + windowMs and leaves no key", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:swl-back:empty`
        const decision = yield* check(env, key, stamped, 0)
        expect(decision).toEqual({
          allowed: true,
          limit,
          remaining: limit,
          resetAt: stamped + windowMs,
          retryAfterMs: 0
        })
        expect(engineDecision([], stamped, 0)).toEqual(decision)
        expect(yield* Effect.promise(() => env.client.exists(key))).toBe(0)
      }))
  })
})
