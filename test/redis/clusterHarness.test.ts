/**
 * The multi-process Redis fixtures themselves (`test/support/redisCluster.ts`, `redisSentinel.ts`), so
 * the Cluster and Sentinel tests of the Redis door can trust them: the cluster comes up as three
 * primaries each with one replica in sync over all 16384 slots, a killed primary's replica takes over
 * its slots (and the old primary comes back as a replica), so does a hung (SIGSTOPped) one's, and the
 * sentinels fail over to the replica and take the old primary back. The measured promotion and failover
 * times are printed.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Cluster } from "ioredis"
import {
  type ClusterPrimary,
  keyInSlots,
  keySlot,
  RedisCluster,
  type RedisClusterHandle,
  SLOT_COUNT
} from "../support/redisCluster.js"
import { infoFields, respCommand, respText } from "../support/redisNode.js"
import { RedisSentinel } from "../support/redisSentinel.js"

const sortedSlotRanges = (primaries: ReadonlyArray<ClusterPrimary>) =>
  primaries.flatMap((primary) => primary.slots).slice().sort((a, b) => a[0] - b[0])

/** SET then GET through an ioredis cluster client seeded with every node, for keys all over the slots. */
const roundTripThroughClient = (cluster: RedisClusterHandle, keys: ReadonlyArray<string>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Cluster(cluster.seeds, { lazyConnect: true })),
    (client) =>
      Effect.promise(async () => {
        await client.connect()
        for (const key of keys) await client.set(key, `v:${key}`)
        return Promise.all(keys.map((key) => client.get(key)))
      }),
    (client) => Effect.promise(() => client.quit().catch(() => "closed"))
  )

layer(RedisCluster.faultLayer, { timeout: 60_000, excludeTestServices: true })("RedisCluster fixture", (it) => {
  it.effect(
    "comes up with three primaries, each with one replica in sync, over all 16384 slots",
    () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        expect(new Set(cluster.seeds.map((seed) => seed.port)).size).toBe(6)
        const primaries = yield* Effect.promise(() => cluster.primaries())
        expect(primaries).toHaveLength(3)
        // Every slot once: the ranges, sorted, follow each other from 0 to 16383.
        const ranges = sortedSlotRanges(primaries)
        expect(ranges[0]?.[0]).toBe(0)
        expect(ranges.at(-1)?.[1]).toBe(SLOT_COUNT - 1)
        ranges.slice(1).forEach((range, i) => expect(range[0]).toBe((ranges[i]?.[1] ?? -2) + 1))
        for (const primary of primaries) {
          expect(primary.replicas).toHaveLength(1)
          expect(yield* Effect.promise(() => cluster.node(primary.port).role())).toBe("primary")
          const replicaPort = primary.replicas[0] ?? 0
          const replication = infoFields(yield* Effect.promise(() => respText(replicaPort, ["INFO", "replication"])))
          expect(replication.get("master_port")).toBe(String(primary.port))
          expect(replication.get("master_link_status")).toBe("up")
        }
        for (const node of cluster.nodes) {
          const info = infoFields(yield* Effect.promise(() => respText(node.port, ["CLUSTER", "INFO"])))
          expect(info.get("cluster_state")).toBe("ok")
          expect(info.get("cluster_slots_assigned")).toBe(String(SLOT_COUNT))
        }
        // `keySlot` is Redis's own hash (hash tags included), and the seeds serve a cluster client.
        for (const key of ["a", "tk:{user:1}:x", "tk:{user:1}:y", "{}k", "\u00e9t\u00e9"]) {
          expect(yield* Effect.promise(() => respCommand(cluster.nodes[0]?.port ?? 0, ["CLUSTER", "KEYSLOT", key])))
            .toBe(keySlot(key))
        }
        const keys = primaries.map((primary) => keyInSlots("tk:seed:", primary.slots))
        expect(yield* roundTripThroughClient(cluster, keys)).toEqual(keys.map((key) => `v:${key}`))
      }),
    30_000
  )

  it.effect("flushAll empties every primary", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisCluster
      const primaries = yield* Effect.promise(() => cluster.primaries())
      for (const primary of primaries) {
        yield* Effect.promise(() => cluster.command(["SET", keyInSlots("tk:flush:", primary.slots), "1"]))
      }
      yield* Effect.promise(() => cluster.flushAll())
      for (const primary of primaries) {
        expect(yield* Effect.promise(() => respCommand(primary.port, ["DBSIZE"]))).toBe(0)
      }
    }), 15_000)

  it.effect(
    "promotes the replica of a killed primary, serves its slots, and takes the old primary back",
    () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const [victim, other] = yield* Effect.promise(() => cluster.primaries())
        if (victim === undefined || other === undefined) throw new Error("the cluster has fewer than 2 primaries")
        const key = keyInSlots("tk:failover:", victim.slots)

        yield* Effect.promise(() => cluster.killPrimary(victim.port))
        const promotion = yield* Effect.promise(() => cluster.awaitPromotion(victim.port, 20_000))
        console.log(`[clusterHarness] replica promoted in ${promotion.elapsedMs} ms after the primary's SIGKILL`)
        expect(promotion.newPrimaryPort).toBe(victim.replicas[0])
        expect(cluster.node(victim.port).state()).toBe("stopped")
        expect(yield* Effect.promise(() => cluster.node(promotion.newPrimaryPort).role())).toBe("primary")
        expect(yield* Effect.promise(() => cluster.primaryForSlot(keySlot(key)))).toBe(promotion.newPrimaryPort)
        const state = infoFields(yield* Effect.promise(() => respText(other.port, ["CLUSTER", "INFO"])))
        expect(state.get("cluster_state")).toBe("ok")
        // Sent to another primary: redirected (MOVED) to the new one, which takes the write.
        expect(yield* Effect.promise(() => cluster.command(["SET", key, "after"], other.port))).toBe("OK")
        expect(yield* Effect.promise(() => cluster.command(["GET", key], other.port))).toBe("after")

        const restartedAt = Date.now()
        yield* Effect.promise(() => cluster.node(victim.port).start())
        yield* Effect.promise(() => cluster.awaitReady(30_000))
        console.log(`[clusterHarness] old primary back as a replica in sync in ${Date.now() - restartedAt} ms`)
        expect(yield* Effect.promise(() => cluster.node(victim.port).role())).toBe("replica")
        const after = yield* Effect.promise(() => cluster.primaries())
        expect(after.find((primary) => primary.port === promotion.newPrimaryPort)?.replicas).toEqual([victim.port])
      }),
    60_000
  )

  it.effect(
    "promotes the replica of a hung (SIGSTOPped) primary, which comes back as a replica when thawed",
    () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const [, , victim] = yield* Effect.promise(() => cluster.primaries())
        if (victim === undefined) throw new Error("the cluster has fewer than 3 primaries")
        yield* Effect.promise(() => cluster.pausePrimary(victim.port))
        const promotion = yield* Effect.promise(() => cluster.awaitPromotion(victim.port, 20_000))
        console.log(`[clusterHarness] replica promoted in ${promotion.elapsedMs} ms after the primary's SIGSTOP`)
        expect(promotion.newPrimaryPort).toBe(victim.replicas[0])
        expect(cluster.node(victim.port).state()).toBe("paused")

        cluster.node(victim.port).resume()
        yield* Effect.promise(() => cluster.awaitReady(30_000))
        expect(yield* Effect.promise(() => cluster.node(victim.port).role())).toBe("replica")
      }),
    60_000
  )
})

layer(RedisSentinel.layer, { timeout: 60_000, excludeTestServices: true })("RedisSentinel fixture", (it) => {
  it.effect(
    "comes up with three sentinels agreeing on the primary and seeing the replica and each other",
    () =>
      Effect.gen(function*() {
        const sentinel = yield* RedisSentinel
        const [primary, replica] = sentinel.nodes
        if (primary === undefined || replica === undefined) throw new Error("the setup has fewer than 2 data nodes")
        expect(sentinel.sentinels).toHaveLength(3)
        expect(yield* Effect.promise(() => sentinel.primaryPort())).toBe(primary.port)
        for (const { port } of sentinel.sentinels) {
          const reply = yield* Effect.promise(() =>
            respCommand(port, ["SENTINEL", "get-master-addr-by-name", sentinel.name])
          )
          expect(reply).toEqual(["127.0.0.1", String(primary.port)])
          const others = yield* Effect.promise(() => respCommand(port, ["SENTINEL", "sentinels", sentinel.name]))
          expect(others).toHaveLength(2)
        }
        expect(yield* Effect.promise(() => replica.role())).toBe("replica")
      }),
    15_000
  )

  it.effect(
    "fails over to the replica when the primary is killed, and takes the old primary back",
    () =>
      Effect.gen(function*() {
        const sentinel = yield* RedisSentinel
        const deadPort = yield* Effect.promise(() => sentinel.killPrimary())
        const failover = yield* Effect.promise(() => sentinel.awaitFailover(30_000))
        console.log(`[clusterHarness] sentinels failed over in ${failover.elapsedMs} ms after the primary's SIGKILL`)
        expect(failover.deadPort).toBe(deadPort)
        expect(failover.newPrimaryPort).toBe(sentinel.nodes.find((node) => node.port !== deadPort)?.port)
        expect(yield* Effect.promise(() => sentinel.primaryPort())).toBe(failover.newPrimaryPort)
        const newPrimary = sentinel.node(failover.newPrimaryPort)
        expect(yield* Effect.promise(() => newPrimary.role())).toBe("primary")
        expect(yield* Effect.promise(() => newPrimary.command(["SET", "tk:sentinel", "after"]))).toBe("OK")
        expect(yield* Effect.promise(() => newPrimary.command(["GET", "tk:sentinel"]))).toBe("after")

        const restartedAt = Date.now()
        yield* Effect.promise(() => sentinel.node(deadPort).start())
        yield* Effect.promise(() => sentinel.awaitReady(30_000))
        console.log(`[clusterHarness] old primary back as a replica in sync in ${Date.now() - restartedAt} ms`)
        expect(yield* Effect.promise(() => sentinel.node(deadPort).role())).toBe("replica")
      }),
    60_000
  )
})
