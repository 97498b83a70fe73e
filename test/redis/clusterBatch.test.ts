/**
 * `checkMany` on a real Redis Cluster (three primaries, three replicas): 100 keys spread over every
 * primary's slots are one call, answered in input order, in exactly one round trip per primary (and none
 * to a replica). The client reaches each node through a counting TCP proxy (ioredis `natMap`), which
 * counts round trips as they cross the wire. After `SCRIPT FLUSH` on every primary, the same call costs
 * exactly two round trips per primary (EVALSHA answered NOSCRIPT, then EVAL) and still applies each check
 * once. The cluster is the fixture's steady one (15 s node timeout): with a 1 s timeout a busy machine's
 * stall got a node flagged failing mid-call in CI, and the slot-map refresh that followed crossed the
 * proxies too.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import { type CountingProxy, startCountingProxy } from "../support/countingProxy.js"
import { keySlot, RedisCluster, type RedisClusterHandle, slotIn } from "../support/redisCluster.js"

const LIMIT = 10
const policy: LimiterPolicy = {
  kind: "limiter",
  name: "batch",
  prefix: "batch",
  maxKeys: 100_000,
  strategy: { kind: "fixedWindow", limit: LIMIT, windowMs: 600_000 }
}

/** A proxy in front of every node, and the cluster client's `natMap` that sends it through them. */
const proxied = (cluster: RedisClusterHandle) =>
  Effect.gen(function*() {
    const proxies = new Map<number, CountingProxy>()
    for (const seed of cluster.seeds) {
      const proxy = yield* Effect.acquireRelease(
        Effect.promise(() => startCountingProxy(seed.port)),
        (p) => Effect.promise(() => p.close())
      )
      proxies.set(seed.port, proxy)
    }
    const natMap: Record<string, { host: string; port: number }> = {}
    for (const [port, proxy] of proxies) natMap[`127.0.0.1:${port}`] = { host: "127.0.0.1", port: proxy.port }
    return { proxies, natMap }
  })

/** Round trips per node port since the last reset. */
const counts = (proxies: ReadonlyMap<number, CountingProxy>) =>
  new Map(Array.from(proxies, ([port, proxy]) => [port, proxy.roundTrips()] as const))

/** What opened each round trip to the node on `port`, for a failed count's message. */
const crossed = (proxies: ReadonlyMap<number, CountingProxy>, port: number) =>
  `round trips to ${port} opened by ${JSON.stringify(proxies.get(port)?.openers())}`

const resetAll = (proxies: ReadonlyMap<number, CountingProxy>) => {
  for (const proxy of proxies.values()) proxy.reset()
}

/** The cluster's primaries, the proxies, and a Redis door that reaches every node through its proxy. */
const throughProxies = Effect.gen(function*() {
  const cluster = yield* RedisCluster
  const primaries = yield* Effect.promise(() => cluster.primaries())
  const { natMap, proxies } = yield* proxied(cluster)
  const limiter = yield* RedisBackend.make({
    policies: [policy],
    redis: {
      cluster: cluster.seeds.map((seed) => `127.0.0.1:${natMap[`127.0.0.1:${seed.port}`]!.port}`),
      // No periodic slot refresh: nothing but the calls under test crosses the proxies.
      options: { natMap, slotsRefreshInterval: 0 }
    }
  })
  return { cluster, primaries, proxies, limiter }
})

layer(RedisCluster.layer, { timeout: 60_000, excludeTestServices: true })("checkMany on a Redis Cluster", (it) => {
  it.scoped(
    "100 keys over every primary: one call, answers in input order, exactly one round trip per primary",
    () =>
      Effect.gen(function*() {
        const { limiter, primaries, proxies } = yield* throughProxies

        const keys = Array.from({ length: 100 }, (_, i) => `user-${i}`)
        // The 100 keys reach every primary (the store key is "batch:<key>").
        const owners = keys.map((key) => primaries.findIndex((p) => slotIn(keySlot(`batch:${key}`), p.slots)))
        expect(new Set(owners)).toEqual(new Set([0, 1, 2]))

        // Each key gets its own history first, so the answers tell the keys apart: key i has i % 4 spent.
        yield* Effect.forEach(
          keys,
          (key, i) => Effect.forEach(Array.from({ length: i % 4 }), () => limiter.check("batch", key)),
          { concurrency: 8, discard: true }
        )
        // Warm every primary's script cache through a batch of other keys.
        yield* limiter.checkMany("batch", keys.map((key) => `warm-${key}`))

        resetAll(proxies)
        const decisions = yield* limiter.checkMany("batch", keys)
        const trips = counts(proxies)
        console.log(`[clusterBatch] round trips per node for checkMany(100): ${JSON.stringify([...trips])}`)

        expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual(
          keys.map((_, i) => [true, LIMIT - (i % 4) - 1])
        )
        for (const primary of primaries) {
          expect(trips.get(primary.port), crossed(proxies, primary.port)).toBe(1)
          for (const replica of primary.replicas) expect(trips.get(replica), crossed(proxies, replica)).toBe(0)
        }
      }),
    { timeout: 60_000 }
  )

  it.scoped(
    "after SCRIPT FLUSH on every primary: two round trips per primary (NOSCRIPT, then EVAL), each check applied once",
    () =>
      Effect.gen(function*() {
        const { cluster, limiter, primaries, proxies } = yield* throughProxies
        const keys = Array.from({ length: 60 }, (_, i) => `flushed-${i}`)
        yield* limiter.checkMany("batch", keys.map((key) => `warm2-${key}`))
        for (const primary of primaries) {
          yield* Effect.promise(() => cluster.command(["SCRIPT", "FLUSH"], primary.port))
        }

        resetAll(proxies)
        const decisions = yield* limiter.checkMany("batch", keys)
        const trips = counts(proxies)
        console.log(`[clusterBatch] round trips per node after SCRIPT FLUSH: ${JSON.stringify([...trips])}`)
        expect(decisions.every((d) => d.allowed && d.remaining === LIMIT - 1)).toBe(true)
        const touched = primaries.filter((p) => keys.some((key) => slotIn(keySlot(`batch:${key}`), p.slots)))
        for (const primary of touched) expect(trips.get(primary.port), crossed(proxies, primary.port)).toBe(2)
        // Applied once each: a peek sees one unit spent.
        const peeks = yield* Effect.forEach(keys, (key) => limiter.peek("batch", key))
        expect(peeks.every((d) => d.remaining === LIMIT - 1)).toBe(true)
      }),
    { timeout: 60_000 }
  )
})
