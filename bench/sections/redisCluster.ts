/**
 * Redis Cluster: a private six-node cluster (three primaries, three replicas: test/support/redisCluster.ts)
 * and a private single redis-server (as the redis section starts it), both started by the bench in the
 * same run. Keys rotate over 10k (`user-N`, no hash tag), so they spread over all 16384 slots and all
 * three primaries. The sides take turns (alternated rounds), so they never load the machine at once.
 *
 * - `redis-cluster.c64`: the Redis door's check, 64 callers, on one node and on the cluster (3 primaries),
 *   side by side, with raw ioredis EVALSHA of the same script under each (a `Cluster` client on the
 *   cluster: the floor of any wrapper there). `redis-cluster.c64.clusterVsSingle` (cluster / one node) is
 *   informational, with no target: on a small machine the bench process, the Redis processes and the
 *   cluster's replicas (which apply every write too) share the same few cores, so the ratio says more
 *   about the CPU than about Redis.
 * - `many100.cluster` / `many100.1-node`: one operation is 100 decisions on 100 keys spread over all slots:
 *   one `checkMany` (on a cluster, one pipeline per primary, sent at once), 100 `check`s at once
 *   (`Effect.forEach`, unbounded concurrency) or 100 `check`s one after another, run back to back by
 *   one caller. `redis-cluster.checkMany100VsChecks` and `redis.checkMany100VsChecks` are checkMany over
 *   the sequential checks (target ≥ 10×); the concurrent checks are shown for information. A fourth row
 *   sends the same 100 EVALSHA through raw ioredis pipelines (one per primary on the cluster): the floor of
 *   any batch, so `….many100.ceiling` (raw pipelines over our sequential checks) is the most the
 *   target's ratio can reach on this machine (on loopback a round trip costs only a few scripts' run time).
 * - `replicaAcks.c64` / `replicaAcks.serial`: the door on the cluster with `replicaAcks: 1` (every
 *   consuming call followed by `WAIT 1`) against `replicaAcks: 0`: `redis-cluster.replicaAcksCost` is the
 *   throughput with over without at 64 callers (informational).
 *
 * The cluster's node timeout is raised to 15 s (the fixture's 1 s suits failover tests), so a busy
 * machine cannot make a node look dead mid-run. Everything (both runtimes, the raw clients, the six
 * cluster processes and their temp dirs, the single server) is closed in `finally`, on failure too.
 */
import { Effect, ManagedRuntime } from "effect"
import { Cluster, Redis } from "ioredis"
import * as os from "node:os"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { storeKey } from "../../src/Policy.js"
import * as Replies from "../../src/redis/Replies.js"
import { evalArgs, type Reply } from "../../src/redis/ScriptRunner.js"
import { loadScripts, marshal } from "../../src/redis/Scripts.js"
import { blockKeyOf } from "../../src/redis/Slots.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import {
  keySlot,
  MISSING_REDIS_CLI_HINT,
  redisCliAvailable,
  type RedisClusterHandle,
  startRedisCluster
} from "../../test/support/redisCluster.js"
import {
  MISSING_REDIS_HINT,
  redisServerAvailable,
  type RedisServerHandle,
  startRedisServer
} from "../../test/support/redisServer.js"
import { effectCallers, effectSerial } from "../effectWorkloads.js"
import { measure, type Plan, promiseCallers, promiseSerial, type Result, type Workload } from "../harness.js"
import { benchPolicy, gcraStrategy, KEY_COUNT, keyOf, keys, POLICY } from "../policies.js"
import { type Comparison, cpuRatio, ratio, type Section, type SectionOutcome } from "../section.js"

const OURS_ONE = "RedisBackend.check, one node"
const OURS_CLUSTER = "RedisBackend.check, cluster"
const RAW_ONE = "raw ioredis EVALSHA, one node"
const RAW_CLUSTER = "raw ioredis Cluster EVALSHA"
const MANY = "checkMany(100 keys)"
const CONCURRENT = "100 × check, concurrent"
const SEQUENTIAL = "100 × check, sequential"
const RAW_PIPELINE = "raw ioredis pipeline, 100 EVALSHA"
const ACKS_0 = "RedisBackend.check, replicaAcks 0"
const ACKS_1 = "RedisBackend.check, replicaAcks 1"

/** The keys of one `checkMany`. */
const BATCH = 100

/** `KEY_COUNT / BATCH` batches of 100 consecutive keys, built once: operation `i` takes batch `i % count`. */
const batches: ReadonlyArray<ReadonlyArray<string>> = Array.from(
  { length: KEY_COUNT / BATCH },
  (_, b) => keys.slice(b * BATCH, (b + 1) * BATCH)
)
const batchOf = (i: number): ReadonlyArray<string> => batches[i % batches.length]!

/** The comparisons this section makes; a skipped or failed run names them all. */
const NAMES = [
  "redis-cluster.c64.clusterVsSingle",
  "redis-cluster.checkMany100VsChecks",
  "redis.checkMany100VsChecks",
  "redis-cluster.replicaAcksCost"
] as const

/** Starts the cluster and the single server at once; when either fails, closes the other and throws. */
const startBoth = async (): Promise<{ cluster: RedisClusterHandle; server: RedisServerHandle }> => {
  const [cluster, server] = await Promise.allSettled([
    startRedisCluster(),
    startRedisServer()
  ])
  if (cluster.status === "fulfilled" && server.status === "fulfilled") {
    return { cluster: cluster.value, server: server.value }
  }
  if (cluster.status === "fulfilled") await cluster.value.close()
  if (server.status === "fulfilled") await server.value.close()
  const failure = cluster.status === "rejected" ? cluster.reason : (server as PromiseRejectedResult).reason
  throw failure instanceof Error ? failure : new Error(String(failure))
}

const verifyAllowed = (impl: string, decisions: ReadonlyArray<{ readonly allowed: boolean }>, count: number) => {
  if (decisions.length !== count) throw new Error(`${impl}: ${decisions.length} decisions for ${count} keys`)
  if (!decisions.every((d) => d.allowed)) throw new Error(`${impl}: a check was denied`)
}

/** The three ways of deciding 100 keys on one limiter, and the raw pipelines of the same 100 scripts. */
const manyWorkloads = (
  run: <A, E>(effect: Effect.Effect<A, E, RateLimiter>) => Promise<A>,
  limiter: RateLimiterService,
  rawPipelines: (i: number) => Promise<unknown>
): ReadonlyArray<Workload> => [
  {
    ...effectSerial(MANY, run, (i) => limiter.checkMany(POLICY, batchOf(i))),
    verify: () => run(limiter.checkMany(POLICY, batchOf(0))).then((d) => verifyAllowed(MANY, d, BATCH))
  },
  {
    ...effectSerial(
      CONCURRENT,
      run,
      (i) => Effect.forEach(batchOf(i), (key) => limiter.check(POLICY, key), { concurrency: "unbounded" })
    ),
    verify: () =>
      run(Effect.forEach(batchOf(0), (key) => limiter.check(POLICY, key), { concurrency: "unbounded" })).then((d) =>
        verifyAllowed(CONCURRENT, d, BATCH)
      )
  },
  {
    ...effectSerial(SEQUENTIAL, run, (i) => Effect.forEach(batchOf(i), (key) => limiter.check(POLICY, key))),
    verify: () =>
      run(Effect.forEach(batchOf(0), (key) => limiter.check(POLICY, key))).then((d) =>
        verifyAllowed(SEQUENTIAL, d, BATCH)
      )
  },
  promiseSerial(RAW_PIPELINE, false, rawPipelines)
]

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const missing = !redisServerAvailable() ? MISSING_REDIS_HINT : !redisCliAvailable() ? MISSING_REDIS_CLI_HINT : ""
  if (missing !== "") {
    return { results: [], comparisons: [], skipped: NAMES.map((name) => ({ name, reason: `skipped: ${missing}` })) }
  }
  const { cluster, server } = await startBoth()
  const seeds = cluster.seeds.map(({ host, port }) => ({ host, port }))
  const clients: Array<Redis | Cluster> = []
  const layerOf = (redis: RedisBackend.RedisBackendOptions["redis"], replicaAcks = 0) =>
    RedisBackend.layer({ policies: [benchPolicy], redis, replicaAcks })
  const one = ManagedRuntime.make(layerOf(server.url))
  const onCluster = ManagedRuntime.make(layerOf({ cluster: seeds }))
  const onClusterAcked = ManagedRuntime.make(layerOf({ cluster: seeds }, 1))
  try {
    const limiterOne = await one.runPromise(RateLimiter)
    const limiterCluster = await onCluster.runPromise(RateLimiter)
    const limiterAcked = await onClusterAcked.runPromise(RateLimiter)

    // The floors: the same script, KEYS and ARGV as the Redis door sends, straight through ioredis.
    const catalog = await Effect.runPromise(loadScripts())
    const script = catalog.find("gcra", "check")
    if (script === undefined) throw new Error("vendor/lua has no gcra check script")
    const { kind: _kind, ...params } = gcraStrategy
    const argv = await Effect.runPromise(marshal(script, "argv", { ...params, now: 0, cost: 1 }))
    const rawOne = new Redis(server.url, { lazyConnect: true })
    clients.push(rawOne)
    await rawOne.connect()
    await rawOne.script("LOAD", script.text)
    const rawCluster = new Cluster(seeds, { lazyConnect: true, scaleReads: "master" })
    clients.push(rawCluster)
    await rawCluster.connect()
    for (const node of rawCluster.nodes("master")) await node.script("LOAD", script.text)
    // The state key and, when the script reads blocks, its block key (same slot), as the door sends them.
    const blocks = script.keys.length === 2
    const argsOf = (key: string) => {
      const stateKey = storeKey(benchPolicy.prefix, key)
      return evalArgs({ script, keys: blocks ? [stateKey, blockKeyOf(stateKey)] : [stateKey], argv })
    }
    const rawCheck = (client: Redis | Cluster) => (i: number) =>
      client.evalsha(script.sha1, ...argsOf(keyOf(i))) as Promise<Reply>
    // The raw floor of a batch: one pipeline of the 100 EVALSHA on one node; on the cluster, one per primary
    // (an ioredis Cluster pipeline takes one slot's keys only), grouped once by the slot map, sent at once.
    const pipelineOf = (client: Redis, batch: ReadonlyArray<string>) => {
      const pipeline = client.pipeline()
      for (const key of batch) pipeline.evalsha(script.sha1, ...argsOf(key))
      return pipeline.exec().then((replies) => {
        const failure = replies?.find(([error]) => error !== null)?.[0]
        if (replies === null || failure != null) throw failure ?? new Error("pipeline discarded")
      })
    }
    const primaries = new Map(
      rawCluster.nodes("master").map((node) => [`${node.options.host}:${node.options.port}`, node])
    )
    const clusterBatches = batches.map((batch) => {
      const byNode = new Map<Redis, Array<string>>()
      for (const key of batch) {
        const address = rawCluster.slots[keySlot(storeKey(benchPolicy.prefix, key))]?.[0]
        const node = address === undefined ? undefined : primaries.get(address)
        if (node === undefined) throw new Error(`no primary known for ${key} (at ${String(address)})`)
        byNode.set(node, [...(byNode.get(node) ?? []), key])
      }
      return [...byNode]
    })
    const rawPipelinesOne = (i: number) => pipelineOf(rawOne, batchOf(i))
    const rawPipelinesCluster = (i: number) =>
      Promise.all(clusterBatches[i % clusterBatches.length]!.map(([node, batch]) => pipelineOf(node, batch)))
    const verifyRaw = (impl: string, check: (i: number) => Promise<Reply>) => () =>
      check(0).then((reply) =>
        Effect.runPromise(Replies.decisionOf(reply)).then((decision) => {
          if (!decision.allowed) throw new Error(`${impl}: the first check was denied`)
        })
      )
    const verifyCheck = (
      impl: string,
      runPromise: <A, E>(effect: Effect.Effect<A, E, RateLimiter>) => Promise<A>,
      limiter: RateLimiterService
    ) =>
    () =>
      runPromise(limiter.check(POLICY, keyOf(0))).then((decision) => {
        if (!decision.allowed) throw new Error(`${impl}: the first check was denied`)
      })

    const results: Array<Result> = []
    const c64: ReadonlyArray<Workload> = [
      {
        ...effectCallers(OURS_ONE, one.runFork, (i) => limiterOne.check(POLICY, keyOf(i))),
        verify: verifyCheck(OURS_ONE, one.runPromise, limiterOne)
      },
      {
        ...effectCallers(OURS_CLUSTER, onCluster.runFork, (i) => limiterCluster.check(POLICY, keyOf(i))),
        verify: verifyCheck(OURS_CLUSTER, onCluster.runPromise, limiterCluster)
      },
      { ...promiseCallers(RAW_ONE, false, rawCheck(rawOne)), verify: verifyRaw(RAW_ONE, rawCheck(rawOne)) },
      {
        ...promiseCallers(RAW_CLUSTER, false, rawCheck(rawCluster)),
        verify: verifyRaw(RAW_CLUSTER, rawCheck(rawCluster))
      }
    ]
    results.push(...(await measure("redis-cluster.c64", c64, plan)))
    results.push(
      ...(await measure(
        "many100.cluster",
        manyWorkloads(onCluster.runPromise, limiterCluster, rawPipelinesCluster),
        plan
      ))
    )
    results.push(...(await measure("many100.1-node", manyWorkloads(one.runPromise, limiterOne, rawPipelinesOne), plan)))
    const acksC64: ReadonlyArray<Workload> = [
      {
        ...effectCallers(ACKS_0, onCluster.runFork, (i) => limiterCluster.check(POLICY, keyOf(i))),
        verify: verifyCheck(ACKS_0, onCluster.runPromise, limiterCluster)
      },
      {
        ...effectCallers(ACKS_1, onClusterAcked.runFork, (i) => limiterAcked.check(POLICY, keyOf(i))),
        verify: verifyCheck(ACKS_1, onClusterAcked.runPromise, limiterAcked)
      }
    ]
    results.push(...(await measure("replicaAcks.c64", acksC64, plan)))
    const acksSerial: ReadonlyArray<Workload> = [
      effectSerial(ACKS_0, onCluster.runPromise, (i) => limiterCluster.check(POLICY, keyOf(i))),
      effectSerial(ACKS_1, onClusterAcked.runPromise, (i) => limiterAcked.check(POLICY, keyOf(i)))
    ]
    results.push(...(await measure("replicaAcks.serial", acksSerial, plan)))

    const cpus = os.cpus().length
    const comparisons: Array<Comparison> = [
      {
        ...ratio(results, "redis-cluster.c64.clusterVsSingle", "redis-cluster.c64", OURS_CLUSTER, OURS_ONE, {
          headline: true
        }),
        detail: `redis-cluster.c64: cluster (3 primaries) / one node, ours; ${cpus} CPUs shared by the bench and ` +
          "every Redis process, so it measures the CPU more than Redis"
      },
      ratio(results, "redis-cluster.c64.vsRaw", "redis-cluster.c64", OURS_CLUSTER, RAW_CLUSTER),
      ratio(results, "redis-cluster.c64.rawVsSingleRaw", "redis-cluster.c64", RAW_CLUSTER, RAW_ONE),
      ratio(results, "redis-cluster.c64.singleVsRaw", "redis-cluster.c64", OURS_ONE, RAW_ONE),
      ratio(results, "redis-cluster.checkMany100VsChecks", "many100.cluster", MANY, SEQUENTIAL, {
        target: { op: ">=", value: 10 },
        headline: true
      }),
      ratio(results, "redis.checkMany100VsChecks", "many100.1-node", MANY, SEQUENTIAL, {
        target: { op: ">=", value: 10 },
        headline: true
      }),
      ratio(results, "redis-cluster.many100.vsConcurrent", "many100.cluster", MANY, CONCURRENT),
      ratio(results, "redis.many100.vsConcurrent", "many100.1-node", MANY, CONCURRENT),
      ratio(results, "redis-cluster.many100.vsRaw", "many100.cluster", MANY, RAW_PIPELINE),
      cpuRatio(results, "redis-cluster.many100.cpu.vsRaw", "many100.cluster", MANY, RAW_PIPELINE),
      ratio(results, "redis.many100.vsRaw", "many100.1-node", MANY, RAW_PIPELINE),
      {
        ...ratio(results, "redis-cluster.many100.ceiling", "many100.cluster", RAW_PIPELINE, SEQUENTIAL),
        detail: "many100.cluster: raw pipelines / 100 × check, sequential (what checkMany could reach at best here)"
      },
      {
        ...ratio(results, "redis.many100.ceiling", "many100.1-node", RAW_PIPELINE, SEQUENTIAL),
        detail: "many100.1-node: raw pipeline / 100 × check, sequential (what checkMany could reach at best here)"
      },
      {
        ...ratio(results, "redis-cluster.replicaAcksCost", "replicaAcks.c64", ACKS_1, ACKS_0, { headline: true }),
        detail: "replicaAcks.c64: throughput with replicaAcks 1 (WAIT 1 after each check) / with 0"
      },
      {
        ...ratio(results, "redis-cluster.replicaAcksSerial", "replicaAcks.serial", ACKS_1, ACKS_0),
        detail: "replicaAcks.serial: throughput with replicaAcks 1 / with 0"
      }
    ]
    return { results, comparisons, skipped: [] }
  } finally {
    await Promise.allSettled([one.dispose(), onCluster.dispose(), onClusterAcked.dispose()])
    for (const client of clients) client.disconnect()
    await Promise.allSettled([cluster.close(), server.close()])
  }
}

/** The redis-cluster section. */
export const redisCluster: Section = { name: "redis-cluster", run }
