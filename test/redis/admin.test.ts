/**
 * `RateLimiterAdmin` on the Redis door (a real `redis-server`, Effect's clock driven by `TestClock`): the
 * admin scripts (`*.penalize.lua`, `*.reward.lua`, `key.reset.lua`) give the same decisions as the Memory
 * door's engine for the same operations at the same instants, on every strategy and on a token budget;
 * reset leaves no key; a block is not served (typed `OperationNotSupported`); bad input fails with its
 * typed error and changes nothing.
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
    yield* record(admin.penalize(policy, "k", 3))
    yield* record(admin.reset(policy, "k"))
    yield* record(limiter.peek(policy, "k"))
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
          expect(yield* Effect.promise(() => env.client.exists(`${ns}:${name}:k`))).toBe(0)
        }))
    }

    it.scoped("a block is not served on Redis; bad input fails typed and changes nothing", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:admin:faults`
        const { admin, limiter } = yield* doorsOver(
          yield* RedisBackend.makeStore({ policies: policiesIn(ns), redis: env.url, clock: "effect" })
        )
        yield* TestClock.setTime(5000)
        yield* limiter.check("fixedWindow", "k", 2)
        const before = yield* Effect.promise(() => env.client.hgetall(`${ns}:fixedWindow:k`))
        const faults = yield* Effect.all([
          Effect.flip(admin.block("fixedWindow", "k", 1000)),
          Effect.flip(admin.unblock("fixedWindow", "k")),
          Effect.flip(admin.reset("nope", "k")),
          Effect.flip(admin.penalize("fixedWindow", "", 1)),
          Effect.flip(admin.penalize("fixedWindow", "k", 0)),
          Effect.flip(admin.reward("fixedWindow", "k", 2 ** 53))
        ])
        expect(faults.map((f) => [f._tag, "argument" in f ? f.argument : ""])).toEqual([
          ["OperationNotSupported", ""],
          ["OperationNotSupported", ""],
          ["PolicyNotFound", ""],
          ["InvalidArgument", "key"],
          ["InvalidArgument", "units"],
          ["InvalidArgument", "units"]
        ])
        expect(yield* Effect.promise(() => env.client.hgetall(`${ns}:fixedWindow:k`))).toEqual(before)
        expect(before).toEqual({ s: "5000", c: "2" })
        // The state layout stays the contract's: a penalty counts in `c`, a reward takes from it.
        yield* admin.penalize("fixedWindow", "k", 2)
        expect(yield* Effect.promise(() => env.client.hmget(`${ns}:fixedWindow:k`, "s", "c"))).toEqual(["5000", "4"])
        yield* admin.reward("fixedWindow", "k", 3)
        expect(yield* Effect.promise(() => env.client.hmget(`${ns}:fixedWindow:k`, "s", "c"))).toEqual(["5000", "1"])
      }))
  })
})
