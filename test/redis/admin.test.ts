/**
 * `RateLimiterAdmin` on the Redis door (a real `redis-server`, Effect's clock driven by `TestClock`): the
 * admin scripts (`*.penalize.lua`, `*.reward.lua`, `key.reset.lua`) give the same decisions as the Memory
 * door's engine for the same operations at the same instants, on every strategy and on a token budget;
 * so do blocks (`key.block.lua`, read by every check, debit, peek and forecast script): a blocked key is
 * denied with the block's end as reset, its state untouched, and reset lifts the block. Reset leaves no
 * key; bad input fails with its typed error and changes nothing.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy, Strategy } from "../../src/Policy.js"
import { make as makeFront } from "../../src/services/RateLimiter.js"
import * as RateLimiterAdmin from "../../src/services/RateLimiterAdmin.js"
import type { LocalStore } from "../../src/services/RateLimiterStore.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const strategies: ReadonlyArray<readonly [string, Strategy]> = [
  ["gcra", { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }],
  ["tokenBucket", { kind: "tokenBucket", capacity: 5, refillPerSec: 3 }],
  ["fixedWindow", { kind: "fixedWindow", limit: 5, windowMs: 1000 }],
  ["slidingWindow", { kind: "slidingWindow", limit: 5, windowMs: 1000, buckets: 4 }],
  ["slidingWindowLog", { kind: "slidingWindowLog", limit: 5, windowMs: 1000 }],
  ["quota", { kind: "quota", resetCadence: "fixed", limit: 5, periodMs: 1000, anchor: 0 }],
  ["rollingQuota", { kind: "quota", resetCadence: "rolling", limit: 5, periodMs: 1000, buckets: 4 }]
]

const policiesIn = (ns: string): ReadonlyArray<Policy> => [
  ...strategies.map(([name, strategy]): Policy => ({
    kind: "limiter",
    name,
    prefix: `${ns}:${name}`,
    maxKeys: 100,
    strategy
  })),
  { kind: "meter", name: "llm", prefix: `${ns}:llm`, maxKeys: 100, budget: 10, windowMs: 1000, shared: false }
]

/** The limiter and the admin over one store. */
const doorsOver = (store: LocalStore) =>
  Effect.map(makeFront(store), (limiter) => ({ limiter, admin: RateLimiterAdmin.make(store) }))

type Doors = Effect.Effect.Success<ReturnType<typeof doorsOver>>

/** One run of admin operations and checks on `policy`'s key `k`, every answer recorded. */
const script = (doors: Doors, policy: string, consume: (key: string, n: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const { admin, limiter } = doors
    const seen: Array<unknown> = []
    const record = (effect: Effect.Effect<unknown, unknown>) =>
      Effect.map(effect, (answer) => seen.push(typeof answer === "object" && answer !== null ? { ...answer } : answer))
    yield* TestClock.setTime(100_000)
    yield* record(consume("k", 1))
    yield* record(admin.penalize(policy, "k", 2))
    yield* record(limiter.peek(policy, "k"))
    yield* TestClock.adjust(130)
    yield* record(admin.reward(policy, "k", 1))
    yield* record(consume("k", 1))
    yield* TestClock.adjust(260)
    yield* record(consume("k", 1))
    yield* record(admin.reward(policy, "k", 2))
    yield* record(admin.penalize(policy, "k", 50))
    yield* record(consume("k", 1))
    yield* TestClock.adjust(400)
    yield* record(admin.reward(policy, "k", 1))
    yield* record(limiter.peek(policy, "k"))
    yield* record(admin.reward(policy, "k", 50))
    yield* record(limiter.peek(policy, "k"))
    // Blocks: long ones (Effect's clock moves; Redis expires the block key in real time, after its length).
    yield* record(admin.block(policy, "k", 60_000))
    yield* record(consume("k", 1))
    yield* record(limiter.peek(policy, "k"))
    yield* record(limiter.forecast(policy, "k", 1))
    yield* TestClock.adjust(1000)
    yield* record(admin.penalize(policy, "k", 1))
    yield* record(admin.reward(policy, "k", 1))
    yield* record(consume("k", 1))
    yield* record(limiter.forecast(policy, "k", 2))
    yield* record(admin.unblock(policy, "k"))
    yield* record(admin.unblock(policy, "k"))
    yield* record(consume("k", 1))
    yield* record(limiter.forecast(policy, "k", 1))
    yield* record(admin.block(policy, "k", 50_000))
    yield* record(admin.block(policy, "k", 20_000))
    yield* TestClock.adjust(19_999)
    yield* record(consume("k", 1))
    yield* TestClock.adjust(1)
    yield* record(consume("k", 1))
    yield* record(admin.penalize(policy, "k", 3))
    yield* record(admin.block(policy, "k", 60_000))
    yield* record(admin.reset(policy, "k"))
    yield* record(limiter.peek(policy, "k"))
    yield* record(consume("k", 1))
    return seen
  })

describe("RateLimiterAdmin on the Redis door", () => {
  layer(testRedisLayer())((it) => {
    for (const [name] of [...strategies, ["llm"] as const]) {
      it.scoped(`${name}: the admin scripts answer as the Memory door's engine, and reset leaves no key`, () =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const ns = `${env.ns}:admin:${name}`
          const policies = policiesIn(ns)
          const redis = yield* doorsOver(yield* RedisBackend.makeStore({ policies, redis: env.url, clock: "effect" }))
          const memory = yield* doorsOver(yield* MemoryBackend.makeStore({ policies }))
          const consume = (doors: Doors) => (key: string, n: number) =>
            name === "llm" ? doors.limiter.debit(name, key, n) : doors.limiter.check(name, key, n)
          const onRedis = yield* script(redis, name, consume(redis))
          const inMemory = yield* script(memory, name, consume(memory))
          expect(onRedis).toEqual(inMemory)
          // The run saw blocks: denials with a block's end as reset.
          expect(onRedis).toContainEqual(expect.objectContaining({ allowed: false, resetAt: 100_790 + 60_000 }))
          yield* redis.admin.reset(name, "k")
          expect(yield* Effect.promise(() => env.client.exists(`${ns}:${name}:k`, `{${ns}:${name}:k}:block`))).toBe(0)
        }))
    }

    it.scoped("a block denies with its end as reset and keeps the state; reset lifts it; bad input fails typed", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:admin:faults`
        const { admin, limiter } = yield* doorsOver(
          yield* RedisBackend.makeStore({ policies: policiesIn(ns), redis: env.url, clock: "effect" })
        )
        const stateKey = `${ns}:fixedWindow:k`
        yield* TestClock.setTime(5000)
        yield* limiter.check("fixedWindow", "k", 2)
        const before = yield* Effect.promise(() => env.client.hgetall(stateKey))
        // Blocked: every read and check of the key is denied with the block's end; nothing is written.
        const blocked = yield* admin.block("fixedWindow", "k", "2 minutes")
        expect([blocked.allowed, blocked.remaining, blocked.resetAt, blocked.retryAfterMs]).toEqual([
          false,
          0,
          125_000,
          120_000
        ])
        expect(yield* Effect.promise(() => env.client.get(`{${stateKey}}:block`))).toBe("125000")
        yield* TestClock.adjust(500)
        const denied = yield* limiter.check("fixedWindow", "k", 1)
        expect([denied.allowed, denied.resetAt, denied.retryAfterMs]).toEqual([false, 125_000, 119_500])
        const many = yield* limiter.checkMany("fixedWindow", ["k", "other"], 1)
        expect(many.map((d) => [d.allowed, d.resetAt])).toEqual([[false, 125_000], [true, 6000]])
        const all = yield* limiter.checkAll([
          { policy: "fixedWindow", key: "k", cost: 1 },
          { policy: "llm", key: "k", cost: 1 }
        ])
        expect(all.allowed).toBe(false)
        // All or nothing: the budget's debit beside the blocked dimension was not written either.
        expect(yield* Effect.promise(() => env.client.exists(`${ns}:llm:k`))).toBe(0)
        expect(yield* Effect.promise(() => env.client.hgetall(stateKey))).toEqual(before)
        // Reset forgets the state and lifts the block.
        yield* admin.reset("fixedWindow", "k")
        expect(yield* Effect.promise(() => env.client.exists(stateKey, `{${stateKey}}:block`))).toBe(0)
        expect((yield* limiter.check("fixedWindow", "k", 2)).allowed).toBe(true)
        const afterReset = yield* Effect.promise(() => env.client.hgetall(stateKey))
        const faults = yield* Effect.all([
          Effect.flip(admin.block("fixedWindow", "k", 0)),
          Effect.flip(admin.block("fixedWindow", "k", 1.5)),
          Effect.flip(admin.block("fixedWindow", "k", RateLimiterAdmin.MAX_BLOCK_MS + 1)),
          Effect.flip(admin.block("fixedWindow", "", 1000)),
          Effect.flip(admin.block("nope", "k", 1000)),
          Effect.flip(admin.unblock("fixedWindow", "")),
          Effect.flip(admin.reset("nope", "k")),
          Effect.flip(admin.penalize("fixedWindow", "", 1)),
          Effect.flip(admin.penalize("fixedWindow", "k", 0)),
          Effect.flip(admin.reward("fixedWindow", "k", 2 ** 53))
        ])
        expect(faults.map((f) => [f._tag, "argument" in f ? f.argument : ""])).toEqual([
          ["InvalidArgument", "duration"],
          ["InvalidArgument", "duration"],
          ["InvalidArgument", "duration"],
          ["InvalidArgument", "key"],
          ["PolicyNotFound", ""],
          ["InvalidArgument", "key"],
          ["PolicyNotFound", ""],
          ["InvalidArgument", "key"],
          ["InvalidArgument", "units"],
          ["InvalidArgument", "units"]
        ])
        expect(yield* Effect.promise(() => env.client.exists(`{${stateKey}}:block`))).toBe(0)
        expect(yield* Effect.promise(() => env.client.hgetall(stateKey))).toEqual(afterReset)
        yield* admin.reset("fixedWindow", "k")
        // A client that sends the core's one key (no block key) shares the state and reads no block.
        yield* admin.block("fixedWindow", "core", "1 hour")
        const coreCheck = env.catalog.scripts.get("fixedWindow.check")!
        const coreReply = yield* Effect.promise(() =>
          env.client.eval(coreCheck.text, 1, `${ns}:fixedWindow:core`, "5000", "5", "1000", "1")
        )
        expect(coreReply).toEqual([1, 5, 4, 6000, 0])
        expect((yield* limiter.check("fixedWindow", "core", 1)).resetAt).toBeGreaterThan(3_600_000)
        yield* admin.reset("fixedWindow", "core")
        yield* TestClock.setTime(5000)
        yield* limiter.check("fixedWindow", "k", 2)
        expect(before).toEqual({ s: "5000", c: "2" })
        // The state layout stays the contract's: a penalty counts in `c`, a reward takes from it.
        yield* admin.penalize("fixedWindow", "k", 2)
        expect(yield* Effect.promise(() => env.client.hmget(`${ns}:fixedWindow:k`, "s", "c"))).toEqual(["5000", "4"])
        yield* admin.reward("fixedWindow", "k", 3)
        expect(yield* Effect.promise(() => env.client.hmget(`${ns}:fixedWindow:k`, "s", "c"))).toEqual(["5000", "1"])
      }))
  })
})
