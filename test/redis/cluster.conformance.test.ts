/**
 * The shared `RateLimiter` conformance suite on the Redis door over a real Redis Cluster (three
 * primaries, three replicas): once with the Redis server clock and once with Effect's clock, both on one
 * cluster. Every primary is flushed before each suite's backend is built (the suites' limiter keys are
 * fresh, but the admitters' lease sets are per policy), and afterwards the suite's keys must have landed
 * on every primary, so batches, checks and admissions really crossed nodes.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { conformancePolicies, conformanceSuite } from "../support/conformance.js"
import { RedisCluster } from "../support/redisCluster.js"

/** The Redis door on the cluster in context, built on a flushed cluster. */
const backend = (clock: "redis" | "effect") =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const cluster = yield* RedisCluster
    yield* Effect.promise(() => cluster.flushAll())
    return RedisBackend.layer({ policies: conformancePolicies, redis: { cluster: cluster.seeds }, clock })
  }))

layer(RedisCluster.layer, { timeout: 90_000, excludeTestServices: true })("Redis door on a Redis Cluster", (it) => {
  conformanceSuite("redis cluster (server clock)", (tests) => it.layer(backend("redis"), { timeout: 30_000 })(tests))
  conformanceSuite("redis cluster (Effect clock)", (tests) => it.layer(backend("effect"), { timeout: 30_000 })(tests))

  it.effect("the last suite's keys are on every primary", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisCluster
      const primaries = yield* Effect.promise(() => cluster.primaries())
      expect(primaries).toHaveLength(3)
      for (const primary of primaries) {
        const size = yield* Effect.promise(() => cluster.node(primary.port).command(["DBSIZE"]))
        expect([primary.port, Number(size) > 0]).toEqual([primary.port, true])
      }
    }), 15_000)
})
