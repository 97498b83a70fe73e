/**
 * `keyPrefix`, a deployment's namespace, on one Redis and on a Redis Cluster: two Redis doors with
 * prefixes "blue" and "green" on the same Redis keep separate counts, budgets and concurrency ceilings
 * for the same policies and keys; every key they write starts with `blue:` / `green:` (none without);
 * an admitter's keys (`blue:{tag}#leases`, its unified rate keys `blue:{tag}:key`) share one slot
 * (`CLUSTER KEYSLOT` on the cluster); a lease minted under one prefix is unknown to the other; and a
 * prefix holding a brace fails with a typed `BackendError` before any connection is opened or key
 * written (the nodes' connection counters and key sets do not move).
 */
import { describe, expect, layer, type Vitest } from "@effect/vitest"
import { Effect } from "effect"
import { Redis } from "ioredis"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { slotOf } from "../../src/redis/Slots.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { infoFields } from "../support/redisNode.js"
import { onCluster, primaryNodes, type RedisEnv, TestRedis, testRedisLayer } from "./harness.js"
import { connected, fixedConcurrency, HOUR, poolAdmitter, windowLimiter } from "./topology.js"

const policies: ReadonlyArray<Policy> = [
  windowLimiter("api", "kp", 3),
  // 30 days, as windowLimiter's: the tests read the meter's key after calls on the Redis clock, and it
  // expires when its window ends (an hour's at the top of the hour).
  {
    kind: "meter",
    name: "tokens",
    prefix: "ktok",
    maxKeys: 10_000,
    budget: 10,
    windowMs: LONG_WINDOW_MS,
    shared: false
  },
  poolAdmitter("pool", "kpool", 2),
  {
    kind: "admitter",
    name: "unified",
    prefix: "kuni",
    maxKeys: 10_000,
    concurrency: fixedConcurrency(2),
    rate: { kind: "gcra", limit: 1, periodMs: HOUR, burst: 1 }
  }
]

/** A Redis door on the test's Redis with `keyPrefix`, in the scope. */
const door = (env: RedisEnv, keyPrefix: string) =>
  RedisBackend.make({ policies, redis: env.connection, keyPrefix, timeoutMs: 2000 })

/** Every key in the Redis (all primaries of a cluster), sorted. */
const allKeys = (env: RedisEnv) =>
  Effect.promise(async () => {
    const perNode = await Promise.all(primaryNodes(env.client).map((node) => node.keys("*")))
    return perNode.flat().sort()
  })

/** Those of `keys` that exist (one EXISTS each: on a cluster they may live on different nodes). */
const existing = (env: RedisEnv, keys: ReadonlyArray<string>) =>
  Effect.filter(keys, (key) => Effect.promise(async () => (await env.client.exists(key)) === 1))

/** The slot of `key`: the cluster's answer (`CLUSTER KEYSLOT`), or ours on one node (checked in cluster.test.ts). */
const slotOfKey = (env: RedisEnv, key: string) =>
  env.cluster === undefined
    ? Effect.succeed(slotOf(key))
    : Effect.promise(() => env.cluster!.command(["CLUSTER", "KEYSLOT", key]))

/** Every node of the test's Redis (replicas included), as ports. */
const nodePorts = (env: RedisEnv): ReadonlyArray<number> =>
  env.cluster === undefined ? [Number(new URL(env.url).port)] : env.cluster.nodes.map((node) => node.port)

const remainingOf = (decisions: ReadonlyArray<{ readonly allowed: boolean; readonly remaining: number }>) =>
  decisions.map((d) => [d.allowed, d.remaining])

/** The test's Redis, a key of this run, and the doors "blue" and "green" on it (in the scope). */
const blueAndGreen = Effect.gen(function*() {
  const env = yield* TestRedis
  return { env, key: `user-${env.ns}`, blue: yield* door(env, "blue"), green: yield* door(env, "green") }
})

const prefixTests = (it: Vitest.MethodsNonLive<TestRedis, true>): void => {
  it.effect(
    "blue and green keep separate counts and budgets; every key starts with its prefix",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { blue, env, green, key } = yield* blueAndGreen
        const blueChecks = yield* Effect.forEach([1, 2, 3, 4], () => blue.check("api", key))
        expect(remainingOf(blueChecks)).toEqual([[true, 2], [true, 1], [true, 0], [false, 0]])
        expect(remainingOf([yield* green.check("api", key)])).toEqual([[true, 2]])
        expect(remainingOf(yield* green.checkMany("api", [key, key]))).toEqual([[true, 1], [true, 0]])
        expect(remainingOf([yield* blue.peek("api", key), yield* green.peek("api", key)])).toEqual([
          [false, 0],
          [false, 0]
        ])
        expect((yield* blue.debit("tokens", key, 7)).remaining).toBe(3)
        expect((yield* green.debit("tokens", key, 2)).remaining).toBe(8)

        expect(yield* Effect.promise(() => env.client.hget(`blue:kp:${key}`, "c"))).toBe("3")
        expect(yield* Effect.promise(() => env.client.hget(`green:kp:${key}`, "c"))).toBe("3")
        expect(yield* existing(env, [`kp:${key}`, `ktok:${key}`])).toEqual([])
        const keys = yield* allKeys(env)
        expect(keys).toEqual(expect.arrayContaining([`blue:kp:${key}`, `green:kp:${key}`, `blue:ktok:${key}`]))
        expect(keys.filter((each) => !each.startsWith("blue:") && !each.startsWith("green:"))).toEqual([])
      })),
    30_000
  )

  it.effect(
    "an admitter's keys carry the prefix, share one slot, and its leases are its own",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { blue, env, green, key } = yield* blueAndGreen
        const blueHeld = yield* Effect.forEach([1, 2, 3], () => blue.admit("pool", key))
        expect(blueHeld.map((admission) => admission.held)).toEqual([true, true, false])
        // Green's ceiling is its own: blue's two leases take none of it.
        const greenHeld = yield* Effect.forEach([1, 2], () => green.admit("pool", key))
        expect(greenHeld.map((admission) => admission.held)).toEqual([true, true])
        expect((yield* blue.admit("unified", key)).held).toBe(true)
        expect((yield* green.admit("unified", key)).held).toBe(true)

        const zcard = (leases: string) => Effect.promise(() => env.client.zcard(leases))
        expect([yield* zcard("blue:{kpool}#leases"), yield* zcard("green:{kpool}#leases")]).toEqual([2, 2])
        expect(yield* existing(env, ["{kpool}#leases", "{kuni}#leases"])).toEqual([])
        const keys = yield* allKeys(env)
        expect(keys).toEqual(
          expect.arrayContaining(["blue:{kpool}#leases", "blue:{kuni}#leases", `blue:{kuni}:${key}`])
        )
        for (const deployment of ["blue", "green"]) {
          for (const tag of ["kpool", "kuni"]) {
            const group = keys.filter((each) => each.startsWith(`${deployment}:{${tag}}`))
            expect(group.length).toBeGreaterThan(0)
            const slots = yield* Effect.forEach(group, (each) => slotOfKey(env, each))
            expect(new Set(slots)).toEqual(new Set([slotOf(tag)]))
          }
        }

        // A blue lease id is unknown to green: releasing it there frees nothing, renewing it reclaims it.
        const blueLease = blueHeld[0]!.leaseId
        yield* green.leases.release(blueLease, false)
        expect(yield* zcard("blue:{kpool}#leases")).toBe(2)
        expect((yield* green.leases.heartbeat([blueLease])).reclaimed).toEqual([blueLease])
        expect((yield* blue.leases.heartbeat([blueLease])).live).toEqual([blueLease])
      })),
    30_000
  )

  it.effect(
    "a prefix holding a brace fails with a typed BackendError and touches nothing",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const env = yield* TestRedis
        const readers = yield* Effect.forEach(
          nodePorts(env),
          (port) => connected(() => new Redis({ host: "127.0.0.1", port, lazyConnect: true }))
        )
        const received = Effect.promise(() =>
          Promise.all(
            readers.map(async (reader) => infoFields(await reader.info("stats")).get("total_connections_received"))
          )
        )
        const connectionsBefore = yield* received
        const keysBefore = yield* allKeys(env)
        for (const keyPrefix of ["a{b", "}", "{blue}"]) {
          const error = yield* Effect.flip(Effect.scoped(door(env, keyPrefix)))
          expect(error._tag).toBe("BackendError")
          if (error._tag !== "BackendError") continue
          expect(error.code).toBe("CONFIG")
          expect(error.detail).toContain("may not hold { or }")
        }
        expect(yield* received).toEqual(connectionsBefore)
        expect(yield* allKeys(env)).toEqual(keysBefore)
      })),
    30_000
  )
}

describe("keyPrefix on one Redis", () => {
  layer(testRedisLayer({ privateServer: true }), { timeout: 30_000, excludeTestServices: true })(prefixTests)
})

onCluster("keyPrefix on a Redis Cluster", prefixTests, 1)
