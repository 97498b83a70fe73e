/**
 * The shared `RateLimiter` conformance suite on the Redis door, against a private `redis-server` (or
 * `REDIS_URL`): once with the Redis server clock (the default) and once with Effect's clock.
 */
import { Effect, Layer } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { conformancePolicies, runConformance } from "../support/conformance.js"
import { redisServer } from "../support/redisServer.js"

const redisUrl = Effect.suspend(() => {
  const external = process.env["REDIS_URL"]
  return external !== undefined && external !== "" ? Effect.succeed(external) : Effect.map(redisServer, (s) => s.url)
})

const backend = (clock: "redis" | "effect") =>
  Layer.unwrapScoped(
    Effect.map(redisUrl, (url) => RedisBackend.layer({ policies: conformancePolicies, redis: url, clock }))
  )

runConformance("redis (server clock)", backend("redis"))
runConformance("redis (Effect clock)", backend("effect"))
