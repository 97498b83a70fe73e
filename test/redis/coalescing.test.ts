/**
 * Coalesced checks on the Redis door (src/redis/CheckBatches.ts): the checks in flight in one tick run many
 * to a `many.check`, and must answer exactly as the same checks sent one at a time, in the same order.
 *
 * - Random histories (fast-check) over every strategy and token budgets: one tick of 1 to 80 concurrent
 *   checks (or debits) on a few keys with random costs, against the same checks one after another on a
 *   twin policy.
 * - The runs counted on the client: a tick of n ≥ 2 checks is ⌈n / BATCH_SIZE⌉ script calls.
 * - A blocked key inside a batch is denied until its block ends, and nothing is written for it.
 * - On a Redis Cluster, batches are per slot: hash-tagged keys share one, plain keys spread.
 *
 * Spans are 30 days long on the Redis clock (the only clock that coalesces): a history takes milliseconds,
 * so no window, period or refill moves between the twin runs, and `limit`, `remaining` and `allowed`
 * must be equal while `resetAt` differs by at most the test's own duration.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Redis } from "ioredis"
import { vi } from "vitest"
import type { Decision } from "../../src/Decision.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { LimiterPolicy, Policy, Strategy } from "../../src/Policy.js"
import { BATCH_SIZE } from "../../src/redis/CheckBatches.js"
import { slotOf } from "../../src/redis/Slots.js"
import { make as makeFront, type RateLimiterService } from "../../src/services/RateLimiter.js"
import * as RateLimiterAdmin from "../../src/services/RateLimiterAdmin.js"
import { RedisCluster } from "../support/redisCluster.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const SPAN = 30 * 86_400_000
const limitArb = fc.integer({ min: 1, max: 6 })

const strategyArb: fc.Arbitrary<Strategy> = fc.oneof(
  fc.record({ kind: fc.constant("gcra" as const), limit: limitArb, periodMs: fc.constant(SPAN), burst: limitArb }),
  fc.record({ kind: fc.constant("tokenBucket" as const), capacity: limitArb, refillPerSec: fc.constant(0.000001) }),
  fc.record({ kind: fc.constant("fixedWindow" as const), limit: limitArb, windowMs: fc.constant(SPAN) }),
  fc.record({
    kind: fc.constant("slidingWindow" as const),
    limit: limitArb,
    windowMs: fc.constant(SPAN),
    buckets: fc.integer({ min: 1, max: 6 })
  }),
  fc.record({ kind: fc.constant("slidingWindowLog" as const), limit: limitArb, windowMs: fc.constant(SPAN) }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("fixed" as const),
    limit: limitArb,
    periodMs: fc.constant(SPAN),
    anchor: fc.constant(0)
  })
)

/** A limiter's strategy, or a token budget (whose debits coalesce alike). */
type Kind = { readonly _tag: "limiter"; readonly strategy: Strategy } | {
  readonly _tag: "meter"
  readonly budget: number
}

const kindArb: fc.Arbitrary<Kind> = fc.oneof(
  { weight: 6, arbitrary: strategyArb.map((strategy): Kind => ({ _tag: "limiter", strategy })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 8 }).map((budget): Kind => ({ _tag: "meter", budget })) }
)

/** One tick's checks: a key (of three) and a cost each; costs may exceed the limit. */
const historyArb = fc.record({
  kind: kindArb,
  checks: fc.array(fc.record({ key: fc.nat({ max: 2 }), cost: fc.integer({ min: 1, max: 4 }) }), {
    minLength: 1,
    maxLength: 80
  })
})

const limiterOf = (name: string, prefix: string, strategy: Strategy): LimiterPolicy => ({
  kind: "limiter",
  name,
  prefix,
  maxKeys: 100,
  strategy
})

const policyOf = (kind: Kind, name: string, prefix: string): Policy =>
  kind._tag === "limiter"
    ? limiterOf(name, prefix, kind.strategy)
    : { kind: "meter", name, prefix, maxKeys: 100, budget: kind.budget, windowMs: SPAN, shared: false }

/** A check, or a debit on a token budget. */
const spend = (limiter: RateLimiterService, kind: Kind, policy: string, key: string, cost: number) =>
  kind._tag === "limiter" ? limiter.check(policy, key, cost) : limiter.debit(policy, key, cost)

const fields = (d: Decision) => [d.allowed, d.limit, d.remaining]

let histories = 0

describe("coalesced checks on one Redis", () => {
  layer(testRedisLayer())((it) => {
    it.scoped.prop(
      "a tick of concurrent checks answers as the same checks one at a time, in ⌈n / BATCH_SIZE⌉ script calls",
      [historyArb],
      ([{ checks, kind }]) =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const ns = `${env.ns}:h${histories++}`
          const client = new Redis(env.url)
          yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
          const store = yield* RedisBackend.makeStore({
            policies: [policyOf(kind, "together", `${ns}:t`), policyOf(kind, "alone", `${ns}:a`)],
            redis: { client }
          })
          // The contract's denial for a cost above capacity, so such costs reach the scripts too.
          const limiter = yield* makeFront(store, { overCapacity: "deny" })
          // Redis's script cache may not hold many.check yet: warm it, so the count below sees EVALSHA only.
          yield* Effect.all([
            spend(limiter, kind, "together", "warm-a", 1),
            spend(limiter, kind, "together", "warm-b", 1)
          ], {
            concurrency: "unbounded"
          })
          const evalsha = vi.spyOn(client, "evalsha")
          const started = Date.now()
          const together = yield* Effect.all(
            checks.map(({ cost, key }) => spend(limiter, kind, "together", `k${key}`, cost)),
            { concurrency: "unbounded" }
          )
          const calls = evalsha.mock.calls.length
          evalsha.mockRestore()
          const alone: Array<Decision> = []
          for (const { cost, key } of checks) alone.push(yield* spend(limiter, kind, "alone", `k${key}`, cost))
          const elapsed = Date.now() - started
          expect(together.map(fields)).toEqual(alone.map(fields))
          for (let i = 0; i < checks.length; i++) {
            expect(Math.abs(together[i]!.resetAt - alone[i]!.resetAt)).toBeLessThanOrEqual(elapsed + 1)
          }
          expect(calls).toBe(Math.ceil(checks.length / BATCH_SIZE))
        }),
      { timeout: 120_000, fastCheck: { numRuns: 60 } }
    )

    it.scoped("a blocked key inside a batch is denied until its block ends; nothing is written for it", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:blocked`
        const store = yield* RedisBackend.makeStore({
          policies: [limiterOf("user", ns, { kind: "fixedWindow", limit: 5, windowMs: SPAN })],
          redis: env.url
        })
        const limiter = yield* makeFront(store)
        const admin = RateLimiterAdmin.make(store)
        expect((yield* limiter.check("user", "mallory")).remaining).toBe(4)
        const state = () => Effect.promise(() => env.client.hgetall(`${ns}:mallory`))
        const before = yield* state()
        const block = yield* admin.block("user", "mallory", "10 minutes")
        const decisions = yield* Effect.all(
          Array.from({ length: 12 }, (_, i) => limiter.check("user", i % 2 === 0 ? "alice" : "mallory")),
          { concurrency: "unbounded" }
        )
        const alice = decisions.filter((_, i) => i % 2 === 0)
        const mallory = decisions.filter((_, i) => i % 2 === 1)
        expect(alice.map((d) => [d.allowed, d.remaining])).toEqual([
          [true, 4],
          [true, 3],
          [true, 2],
          [true, 1],
          [true, 0],
          [false, 0]
        ])
        for (const d of mallory) expect([d.allowed, d.remaining, d.resetAt]).toEqual([false, 0, block.resetAt])
        expect(before.c).toBe("1")
        expect(yield* state()).toEqual(before)
      }))
  })
})

layer(RedisCluster.layer, { timeout: 60_000, excludeTestServices: true })(
  "coalesced checks on a Redis Cluster",
  (it) => {
    it.scoped("batches are per slot: hash-tagged keys share a run, plain keys spread; every answer is exact", () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const store = yield* RedisBackend.makeStore({
          policies: [limiterOf("user", "cc", { kind: "fixedWindow", limit: 10, windowMs: SPAN })],
          redis: { cluster: cluster.seeds }
        })
        const limiter = yield* makeFront(store)
        const keys = ["{acme}:a", "{acme}:b", "{acme}:c", "plain-x", "plain-y", "plain-z"]
        // The tagged keys share a slot; the plain ones are elsewhere.
        expect(new Set(keys.slice(0, 3).map((k) => slotOf(`cc:${k}`))).size).toBe(1)
        expect(new Set(keys.map((k) => slotOf(`cc:${k}`))).size).toBeGreaterThan(2)
        // Warm every node's script cache first, with the same checks on keys of the same slots. On a cold
        // cache a batch answered NOSCRIPT is sent again by text, and a later batch of the same slot sent by
        // SHA-1 in between (the tick's fibers may span two event-loop turns) would overtake it.
        const warm = keys.map((k) => k.startsWith("{") ? `${k}:warm` : `w{cc:${k}}`)
        expect(warm.map((k) => slotOf(`cc:${k}`))).toEqual(keys.map((k) => slotOf(`cc:${k}`)))
        for (const key of warm) yield* limiter.check("user", key)
        yield* Effect.all(
          Array.from({ length: 72 }, (_, i) => limiter.check("user", warm[i % warm.length]!)),
          { concurrency: "unbounded" }
        )
        const decisions = yield* Effect.all(
          Array.from({ length: 72 }, (_, i) => limiter.check("user", keys[i % keys.length]!)),
          { concurrency: "unbounded" }
        )
        for (let k = 0; k < keys.length; k++) {
          const mine = decisions.filter((_, i) => i % keys.length === k)
          // 12 checks each on a limit of 10: the first 10 in arrival order allowed, counting down.
          expect([keys[k], mine.map((d) => d.allowed ? d.remaining : -1)]).toEqual([
            keys[k],
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -1]
          ])
        }
        for (const key of keys) {
          const count = yield* Effect.promise(() => cluster.command(["HGET", `cc:${key}`, "c"]))
          expect([key, count]).toEqual([key, "10"])
        }
      }))
  }
)
