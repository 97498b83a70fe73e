/**
 * Shared pieces of the Redis tests: a Redis to talk to (a private `redis-server`, or `REDIS_URL` for
 * suites that do not stop the server, or a Redis Cluster fixture), the vendored scripts, and a way to run
 * a sequence of script calls and raw commands inside one MULTI/EXEC. Redis freezes its expiry clock
 * during a transaction, so a replay with explicit `now` is not disturbed by keys expiring in real time
 * mid-sequence. On a cluster the client is an ioredis `Cluster`, scripts are loaded on every primary (each
 * has its own cache), and a transaction's keys must share one slot (MULTI runs on one node).
 */
import { describe, expect, layer, type Vitest } from "@effect/vitest"
import { Context, Data, Effect, Layer } from "effect"
import { Cluster, Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import type { RedisConnection, RedisHandle } from "../../src/redis/RedisClient.js"
import {
  evalArgs,
  makeScriptRunner,
  type Reply,
  type ScriptCall,
  type ScriptRunner
} from "../../src/redis/ScriptRunner.js"
import { loadScripts, type Named, type Script, type ScriptCatalog, sha1Hex } from "../../src/redis/Scripts.js"
import { blockKeyOf } from "../../src/redis/Slots.js"
import { RedisCluster, type RedisClusterHandle } from "../support/redisCluster.js"
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js"

/** A failure of the test plumbing itself (not of the code under test). */
export class HarnessError extends Data.TaggedError("HarnessError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const harnessError = (cause: unknown) =>
  new HarnessError({ reason: cause instanceof Error ? cause.message : String(cause) })

/**
 * What a Redis test gets. `server` is set when the test owns a private server (fault tests), `cluster`
 * when it runs on a Redis Cluster fixture.
 */
export interface RedisEnv {
  /** The node's URL; on a cluster, the first seed's (a plain client on it reaches only that node's slots). */
  readonly url: string
  /** What a backend under test connects with: `url`, or `{ cluster: seeds }` on a cluster. */
  readonly connection: RedisConnection
  readonly server: RedisServerHandle | undefined
  readonly cluster: RedisClusterHandle | undefined
  /** A `Redis` client, or a `Cluster` client on a cluster (it routes each key to its primary). */
  readonly client: RedisHandle
  readonly catalog: ScriptCatalog
  readonly runner: ScriptRunner
  /** A key namespace unique to this run. */
  readonly ns: string
}

/** The Redis test environment as a service. */
export class TestRedis extends Context.Tag("test/TestRedis")<TestRedis, RedisEnv>() {}

/**
 * Builds the environment: on `cluster` when given (the fixture stays its owner's); else `REDIS_URL` when
 * set and `privateServer` is false, else a private server started for this layer and killed with it.
 */
export const testRedisLayer = (
  options: { readonly privateServer?: boolean; readonly cluster?: RedisClusterHandle } = {}
): Layer.Layer<TestRedis, HarnessError> =>
  Layer.scoped(
    TestRedis,
    Effect.gen(function*() {
      const cluster = options.cluster
      const external = process.env["REDIS_URL"]
      const server = cluster === undefined &&
          (options.privateServer === true || external === undefined || external === "")
        ? yield* Effect.acquireRelease(
          Effect.tryPromise({ try: () => startRedisServer(), catch: harnessError }),
          (handle) => Effect.promise(() => handle.close())
        )
        : undefined
      const url = cluster !== undefined
        ? `redis://${cluster.seeds[0]!.host}:${cluster.seeds[0]!.port}`
        : server === undefined
        ? external!
        : server.url
      const client = yield* Effect.acquireRelease(
        Effect.sync((): RedisHandle =>
          cluster === undefined
            ? new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
            : new Cluster(cluster.seeds, { lazyConnect: true, redisOptions: { maxRetriesPerRequest: 1 } })
        ),
        (c) => Effect.sync(() => c.disconnect())
      )
      client.on("error", () => {})
      yield* Effect.tryPromise({ try: () => client.connect(), catch: harnessError })
      const catalog = yield* loadScripts().pipe(Effect.mapError(harnessError))
      return {
        url,
        connection: cluster === undefined ? url : { cluster: cluster.seeds },
        server,
        cluster,
        client,
        catalog,
        runner: makeScriptRunner(client, 5_000),
        ns: randomUUID().slice(0, 8)
      }
    })
  )

/** The environment on the `RedisCluster` in context (e.g. nested under `layer(RedisCluster.layer)`). */
export const testRedisClusterLayer: Layer.Layer<TestRedis, HarnessError, RedisCluster> = Layer.unwrapEffect(
  Effect.map(RedisCluster, (cluster) => testRedisLayer({ cluster }))
)

/** How many primaries of `cluster` hold at least one key (DBSIZE > 0), and how many there are. */
const primariesHoldingKeys = (cluster: RedisClusterHandle) =>
  Effect.promise(async () => {
    const primaries = await cluster.primaries()
    let holding = 0
    for (const primary of primaries) {
      if (Number(await cluster.node(primary.port).command(["DBSIZE"])) > 0) holding++
    }
    return { holding, of: primaries.length }
  })

/**
 * Registers `tests` (written against `TestRedis`) in a describe block `name` with a Redis Cluster of its
 * own, then a test that their keys were spread over at least `spread` primaries (so scripts ran on
 * several nodes, each with its own cache).
 */
export const onCluster = (
  name: string,
  tests: (it: Vitest.MethodsNonLive<TestRedis, true>) => void,
  spread: number
): void => {
  describe(name, () => {
    layer(RedisCluster.layer, { timeout: 90_000, excludeTestServices: true })((it) => {
      it.layer(testRedisClusterLayer, { timeout: 30_000 })((it) => {
        tests(it)
        it.effect(`the keys were spread over at least ${spread} primaries`, () =>
          Effect.gen(function*() {
            const { holding, of } = yield* primariesHoldingKeys(yield* RedisCluster)
            expect(holding).toBeGreaterThanOrEqual(Math.min(spread, of))
          }))
      })
    })
  })
}

/** The primaries: the node, or every primary of a cluster (a script must be loaded on each to run anywhere). */
export const primaryNodes = (client: RedisHandle): ReadonlyArray<Redis> =>
  client instanceof Cluster ? client.nodes("master") : [client]

/** The script `name` from the catalog (a test bug if missing). */
export const script = (env: RedisEnv, name: string): Script => {
  const found = env.catalog.scripts.get(name)
  if (found === undefined) throw new Error(`no script ${name} in the manifest`)
  return found
}

/**
 * A call of `name` with named KEYS and ARGV. A script that reads a key's admin block (KEYS `block`) gets
 * the block key of `keys.key` unless one is given, as the Redis store passes it.
 */
export const call = (
  env: RedisEnv,
  name: string,
  keys: Named,
  argv: Named
): Effect.Effect<ScriptCall, HarnessError> => {
  const found = script(env, name)
  const withBlock = found.keys.includes("block") && keys.block === undefined && typeof keys.key === "string"
    ? { ...keys, block: blockKeyOf(keys.key) }
    : keys
  return env.runner.prepare(found, withBlock, argv).pipe(Effect.mapError(harnessError))
}

/** One step of a transaction: a script call or a raw command. */
export type Step = ScriptCall | { readonly command: string; readonly args: ReadonlyArray<string | number> }

/**
 * Runs `steps` inside one MULTI/EXEC (scripts by EVALSHA after SCRIPT LOAD, on every primary of a
 * cluster); replies in order. Any error reply fails the whole run. On a cluster every key of `steps` must
 * hash to one slot.
 */
export const transaction = (env: RedisEnv, steps: ReadonlyArray<Step>): Effect.Effect<Array<Reply>, HarnessError> =>
  Effect.tryPromise({
    try: async () => {
      const texts = new Map<string, string>()
      for (const step of steps) if ("script" in step) texts.set(step.script.sha1, step.script.text)
      for (const node of primaryNodes(env.client)) {
        for (const text of texts.values()) await node.script("LOAD", text)
      }
      const multi = env.client.multi()
      for (const step of steps) {
        if ("script" in step) multi.evalsha(step.script.sha1, ...evalArgs(step))
        else multi.call(step.command, ...step.args)
      }
      const results = await multi.exec()
      if (results === null) throw new Error("transaction aborted")
      return results.map(([error, reply], i) => {
        if (error !== null) throw new Error(`step ${i}: ${error.message}`)
        return reply as Reply
      })
    },
    catch: harnessError
  })

/**
 * A consuming call run so that its key (`KEYS[keyIndex]`) keeps no TTL in real time: the vendored script's
 * exact text runs as the body of a function inside a test-only wrapper script, which then reads the key's
 * absolute expiry (PEXPIRETIME), samples TIME, and removes the TTL (PERSIST), all in the same atomic
 * script run. Redis evaluates expiry inside a script at the script's start instant, so nothing can expire
 * in between. Reply: `[scriptReply, expiry, timeAfter]`. For a lower bound on when the TTL was set, send
 * a plain TIME just before (the script's own start instant precedes anything it can sample).
 */
export const persisting = (inner: ScriptCall, keyIndex = 1): ScriptCall => {
  const text = [
    "local function tk_vendored()",
    inner.script.text,
    "end",
    "local tk_reply = tk_vendored()",
    `local tk_expiry = redis.call('PEXPIRETIME', KEYS[${keyIndex}])`,
    "local tk_time_after = redis.call('TIME')",
    `redis.call('PERSIST', KEYS[${keyIndex}])`,
    "return { tk_reply, tk_expiry, tk_time_after }"
  ].join("\n")
  return {
    ...inner,
    script: { ...inner.script, name: `${inner.script.name}+persist${keyIndex}`, text, sha1: sha1Hex(text) }
  }
}

/** Epoch-ms bounds of a TIME reply (seconds, microseconds). */
export const timeBounds = (reply: Reply): { readonly floor: number; readonly ceil: number } => {
  const [s, us] = reply as ReadonlyArray<string>
  const ms = Number(s) * 1000 + Number(us) / 1000
  return { floor: Math.floor(ms), ceil: Math.ceil(ms) }
}

/** The parts of a `persisting` reply. */
export const persisted = (reply: Reply): {
  readonly reply: Reply
  readonly expiry: number
  readonly after: number
} => {
  const [inner, expiry, after] = reply as ReadonlyArray<Reply>
  return { reply: inner!, expiry: Number(expiry), after: timeBounds(after!).ceil }
}
