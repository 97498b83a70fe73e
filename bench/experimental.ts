/**
 * `@effect/experimental`'s `RateLimiter` (the Effect ecosystem's own limiter), as the incumbent of the
 * Effect-native rows: its `consume` over its memory store (`layerStoreMemory`) or its Redis store
 * (`RateLimiter/Redis.layerStore`, its own ioredis connection and Lua scripts).
 *
 * The policy is the bench's, as close as its algorithms allow: `token-bucket` with `limit`
 * `LIMIT_PER_SEC` per `window` of 1 s is a bucket of `LIMIT_PER_SEC` tokens refilled at `LIMIT_PER_SEC`
 * per second, which is what our GCRA with `burst = limit` decides (GCRA is the token bucket computed from
 * one timestamp). Its `fixed-window` is not usable at this rate: it grows the key's TTL by `window /
 * limit` ms per token, a fraction of a millisecond here, which its Redis script sends to `SET ... PX`
 * (an integer only). `onExceeded: "fail"`: a denial is a failure, so a succeeding call was allowed.
 */
import * as ExperimentalRateLimiter from "@effect/experimental/RateLimiter"
import * as ExperimentalRedis from "@effect/experimental/RateLimiter/Redis"
import { Effect, Layer, ManagedRuntime } from "effect"
import { LIMIT_PER_SEC } from "./policies.js"

/** The experimental limiter's options for one key: the bench policy as a token bucket. */
const optionsFor = (key: string) => ({
  algorithm: "token-bucket" as const,
  onExceeded: "fail" as const,
  window: "1 second" as const,
  limit: LIMIT_PER_SEC,
  key
})

/** The experimental limiter, built on the store `store` provides, in a runtime of its own. */
export const experimentalRuntime = (
  store: Layer.Layer<ExperimentalRateLimiter.RateLimiterStore>
) => ManagedRuntime.make(Layer.provide(ExperimentalRateLimiter.layer, store))

/** Its memory store. */
export const experimentalMemory = () => experimentalRuntime(ExperimentalRateLimiter.layerStoreMemory)

/** Its Redis store on the server at `url` (`redis://host:port`), under its own key prefix. */
export const experimentalRedis = (url: string) => {
  const { hostname, port } = new URL(url)
  return experimentalRuntime(
    Layer.orDie(ExperimentalRedis.layerStore({ host: hostname, port: Number(port), prefix: "experimental:" }))
  )
}

/** One `consume` of one token on `key`, under the bench policy. */
export const consume = (
  limiter: ExperimentalRateLimiter.RateLimiter,
  key: string
): Effect.Effect<ExperimentalRateLimiter.ConsumeResult, ExperimentalRateLimiter.RateLimiterError> =>
  limiter.consume(optionsFor(key))

/** The limiter of a runtime built by `experimentalRuntime`. */
export const limiterOf = (
  runtime: ManagedRuntime.ManagedRuntime<ExperimentalRateLimiter.RateLimiter, never>
): Promise<ExperimentalRateLimiter.RateLimiter> => runtime.runPromise(ExperimentalRateLimiter.RateLimiter)

/** Throws unless a first consume was allowed (it fails when denied: `onExceeded: "fail"`). */
export const verifyConsume = (
  runtime: ManagedRuntime.ManagedRuntime<ExperimentalRateLimiter.RateLimiter, never>,
  limiter: ExperimentalRateLimiter.RateLimiter,
  key: string
): Promise<void> => runtime.runPromise(Effect.asVoid(consume(limiter, key)))
