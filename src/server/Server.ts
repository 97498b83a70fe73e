/**
 * The ThrottleKit server as a layer: the `throttlekit.v1.RateLimiter` RPCs served from the `RateLimiter`
 * in context (memory or Redis), plus health, plus any further services (Monitor, Fleet) given to it.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { RateLimiter } from "../services/RateLimiter.js"
import { GrpcBindError, GrpcServer, type GrpcServerOptions, make } from "./GrpcServer.js"
import * as RateLimiterRpc from "./RateLimiterRpc.js"
import type { ServedService } from "./Service.js"

/**
 * Options of the server layer.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerOptions extends GrpcServerOptions {
  /** Services served beside RateLimiter and health (e.g. Monitor, Fleet). */
  readonly services?: ReadonlyArray<ServedService>
}

/**
 * Serves the `RateLimiter` in context until the layer is released (then shuts down gracefully; the
 * `RateLimiter` layer, provided below this one, is released after the server has stopped).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ServerOptions = {}): Layer.Layer<GrpcServer, GrpcBindError, RateLimiter> =>
  Layer.scoped(
    GrpcServer,
    Effect.flatMap(RateLimiter, (limiter) => make(options, [RateLimiterRpc.make(limiter), ...(options.services ?? [])]))
  )

/**
 * The server on a free loopback port, for tests: read the bound address from `GrpcServer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest: Layer.Layer<GrpcServer, GrpcBindError, RateLimiter> = layer({ host: "127.0.0.1", port: 0 })

export { GrpcBindError, GrpcServer }
