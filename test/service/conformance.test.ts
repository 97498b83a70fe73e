/**
 * The shared `RateLimiter` conformance suite through the Service door: `ServiceBackend` → our gRPC
 * server on loopback, serving the memory store, and serving the Redis store (a private `redis-server`,
 * or `REDIS_URL`).
 */
import { Effect, Layer } from "effect"
import { conformancePolicies, runConformance } from "../support/conformance.js"
import { redisServer } from "../support/redisServer.js"
import { serviceOverMemory, serviceOverRedis } from "./support.js"

const redisUrl = Effect.suspend(() => {
  const external = process.env["REDIS_URL"]
  return external !== undefined && external !== "" ? Effect.succeed(external) : Effect.map(redisServer, (s) => s.url)
})

runConformance("ServiceBackend → our server (memory store)", serviceOverMemory(conformancePolicies))

runConformance(
  "ServiceBackend → our server (Redis store)",
  Layer.unwrapScoped(
    Effect.map(redisUrl, (url) => serviceOverRedis(conformancePolicies, url))
  )
)
