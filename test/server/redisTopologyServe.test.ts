/**
 * `throttlekit-effect serve` over a Redis Cluster and over Redis Sentinel, each server a real process
 * answering real gRPC calls (through `ServiceBackend`):
 * - `--redis-cluster` with two seeds (the rest discovered): the startup line says `store=redis cluster`;
 *   a GCRA burst admits exactly its limit; a checkMany over keys on every primary answers in order and
 *   counts once per key on each node; a concurrency lease is held in one slot; every key carries
 *   `--redis-prefix` (and none is written without it);
 * - `--redis-password-file` against nodes that require a password (set at run time with CONFIG SET,
 *   undone afterwards): the server authenticates with it; without it, `serve` refuses to start, and
 *   nothing it prints holds the password;
 * - `--redis-sentinel` with `--redis-sentinel-name`: the startup line says `store=redis sentinel` and the
 *   state lands on the primary the sentinels name.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { keysOnEveryPrimary, primariesOf } from "../redis/topology.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { RedisCluster, type RedisClusterHandle } from "../support/redisCluster.js"
import { RedisSentinel } from "../support/redisSentinel.js"
import { runToEnd, type ServerProcess, startServer, tempFile } from "./cliProcess.js"

/**
 * The served policies, as a JSON policy file: a GCRA burst of 5, a fixed window of 2 (per 30 days: the
 * test reads its counts after several calls, and an hour's window would roll over at the top of the
 * hour), a pool of 2.
 */
const policyFile = tempFile(
  "policies.json",
  JSON.stringify({
    limiters: {
      api: { strategy: "gcra", limit: 5, period: "1h", burst: 5 },
      win: { strategy: "fixedWindow", limit: 2, windowMs: LONG_WINDOW_MS },
      pool: { concurrency: { algorithm: "fixed", minLimit: 2, maxLimit: 2 } }
    }
  })
)

const serveArgs = (...more: ReadonlyArray<string>) => ["--config", policyFile, "--port", "0", ...more]

const addressList = (nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>) =>
  nodes.map((node) => `${node.host}:${node.port}`).join(",")

const run = randomUUID().slice(0, 8)

/** Runs `program` against `server` through a fresh gRPC client. */
const through = <A, E>(server: ServerProcess, program: Effect.Effect<A, E, RateLimiter | Scope.Scope>) =>
  Effect.scoped(Effect.provide(program, ServiceBackend.layer({ target: server.address })))

/** Six checks of the GCRA burst of 5 on `key`, over gRPC: which were allowed. */
const burst = (server: ServerProcess, key: string) =>
  through(
    server,
    Effect.flatMap(RateLimiter, (limiter) =>
      Effect.forEach([1, 2, 3, 4, 5, 6], () => Effect.map(limiter.check("api", key), (d) => d.allowed)))
  )

const ADMITS_FIVE = [true, true, true, true, true, false]

const exists = (cluster: RedisClusterHandle, key: string) => Effect.promise(() => cluster.command(["EXISTS", key]))

/**
 * Makes every node of `cluster` require `password` (replicas authenticate to their primaries with it
 * too) for the rest of the scope; when it closes, the password is removed again.
 */
const requirePassword = (cluster: RedisClusterHandle, password: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      for (const node of cluster.nodes) {
        expect(await node.command(["CONFIG", "SET", "masterauth", password])).toBe("OK")
      }
      for (const node of cluster.nodes) {
        expect(await node.command(["CONFIG", "SET", "requirepass", password])).toBe("OK")
      }
    }),
    () =>
      Effect.promise(async () => {
        for (const node of cluster.nodes) {
          const client = new Redis({ host: node.host, port: node.port, password, lazyConnect: true })
          client.on("error", () => {})
          try {
            await client.connect()
            await client.config("SET", "requirepass", "")
            await client.config("SET", "masterauth", "")
          } finally {
            client.disconnect()
          }
        }
      })
  )

layer(RedisCluster.layer, { timeout: 90_000, excludeTestServices: true })("serve --redis-cluster", (it) => {
  it.effect(
    "answers gRPC calls from the cluster; keys carry --redis-prefix and land on every primary",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const primaries = yield* primariesOf(cluster)
        const server = yield* startServer(
          serveArgs("--redis-cluster", addressList(cluster.seeds.slice(0, 2)), "--redis-prefix", "srv")
        )
        expect(server.startupLine).toContain("[store=redis cluster, insecure, ")

        const key = `burst-${run}`
        expect(yield* burst(server, key)).toEqual(ADMITS_FIVE)
        expect([yield* exists(cluster, `srv:api:${key}`), yield* exists(cluster, `api:${key}`)]).toEqual([1, 0])

        // One batch over every primary: in input order, each key counted once on its node.
        const keys = keysOnEveryPrimary(primaries, "srv:win:", `many-${run}-`)
        const many = yield* through(
          server,
          Effect.flatMap(RateLimiter, (limiter) => limiter.checkMany("win", [...keys, keys[0]!, keys[0]!]))
        )
        expect(many.map((d) => [d.allowed, d.remaining])).toEqual([
          ...keys.map(() => [true, 1]),
          [true, 0],
          [false, 0]
        ])
        const counts = yield* Effect.promise(() =>
          Promise.all(keys.map((each) => cluster.command(["HGET", `srv:win:${each}`, "c"])))
        )
        expect(counts).toEqual(["2", ...keys.slice(1).map(() => "1")])

        const held = yield* through(
          server,
          Effect.gen(function*() {
            const admission = yield* (yield* RateLimiter).admit("pool", `lease-${run}`)
            return [admission.held, yield* Effect.promise(() => cluster.command(["ZCARD", "srv:{pool}#leases"]))]
          })
        )
        expect(held).toEqual([true, 1])
      })),
    120_000
  )

  it.effect(
    "--redis-password-file: the server authenticates to nodes that require a password",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const password = `pw-${randomUUID()}`
        const passwordFile = tempFile("redis-password", `${password}\n`)
        const seeds = addressList(cluster.seeds.slice(0, 2))
        yield* requirePassword(cluster, password)

        const refused = yield* runToEnd(process.execPath, [
          "--import",
          "tsx",
          "src/server/bin.ts",
          "serve",
          ...serveArgs("--redis-cluster", seeds)
        ])
        expect(refused.code).toBe(1)
        expect(refused.stderr).toContain("the Redis store failed to start")

        const server = yield* startServer(serveArgs("--redis-cluster", seeds, "--redis-password-file", passwordFile))
        expect(server.startupLine).toContain("[store=redis cluster, insecure, ")
        expect(yield* burst(server, `auth-${run}`)).toEqual(ADMITS_FIVE)
        const printed = [refused.stdout, refused.stderr, server.output().stdout, server.output().stderr].join("\n")
        expect(printed).not.toContain(password)
      })),
    120_000
  )
})

layer(RedisSentinel.layer, { timeout: 90_000, excludeTestServices: true })("serve --redis-sentinel", (it) => {
  it.effect(
    "answers gRPC calls from the primary the sentinels name",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const sentinel = yield* RedisSentinel
        const server = yield* startServer(
          serveArgs("--redis-sentinel", addressList(sentinel.sentinels), "--redis-sentinel-name", sentinel.name)
        )
        expect(server.startupLine).toContain("[store=redis sentinel, insecure, ")
        const key = `burst-${run}`
        expect(yield* burst(server, key)).toEqual(ADMITS_FIVE)
        const primary = sentinel.node(yield* Effect.promise(() => sentinel.primaryPort()))
        expect(yield* Effect.promise(() => primary.command(["EXISTS", `api:${key}`]))).toBe(1)
      })),
    120_000
  )
})
