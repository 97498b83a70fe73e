/**
 * throttlekit-effect: ThrottleKit for TypeScript and Effect. Govern rate, concurrency and cost with typed
 * decisions and typed errors, through backends swapped with one Layer.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * from "./Decision.js"

/** @since 0.1.0 */
export * from "./Errors.js"

/** @since 0.1.0 */
export {
  type AdmitOptions,
  admitted,
  type FrontOptions,
  type HeartbeatResult,
  type Leases,
  limit,
  RateLimiter,
  type RateLimiterService,
  spend
} from "./services/RateLimiter.js"

/**
 * The front over a store (`RateLimiter.make`, `RateLimiter.layer`) and the store shapes a door implements.
 *
 * @since 0.2.0
 */
export * as Front from "./services/RateLimiter.js"

/** @since 0.2.0 */
export * as RateLimiterStore from "./services/RateLimiterStore.js"

/**
 * The validated set of policies every layer reads (`PolicySet.make`, `PolicySet.validate`), and
 * `ConfigError`, what a rejected policy or policy file fails with.
 *
 * @since 0.2.0
 */
export { ConfigError, PolicySet } from "./PolicySet.js"

/**
 * The policy file loader (`PolicyFile.load`, `parse`, `decode`). Called `Config` before 0.2; renamed so it
 * no longer shadows Effect's own `Config`.
 *
 * @since 0.2.0
 */
export * as PolicyFile from "./PolicyFile.js"

/** @since 0.1.0 */
export * as Policy from "./Policy.js"

/** @since 0.1.0 */
export * as MemoryBackend from "./layers/MemoryBackend.js"

/** @since 0.1.0 */
export * as RedisBackend from "./layers/RedisBackend.js"

/** One Redis connection to share between the Redis store and the Redis coordinator. @since 0.2.0 */
export * as RedisClient from "./redis/RedisClient.js"

/** @since 0.1.0 */
export * as ServiceBackend from "./layers/ServiceBackend.js"

/** @since 0.1.0 */
export * from "./services/Fleet.js"

/** @since 0.1.0 */
export * from "./services/Monitor.js"

/** @since 0.1.0 */
export * as FleetBackend from "./clients/FleetBackend.js"

/** @since 0.1.0 */
export * as MonitorBackend from "./clients/MonitorBackend.js"

/** @since 0.1.0 */
export * as TwoTier from "./server/TwoTier.js"

/** @since 0.1.0 */
export * as Coordinator from "./coordinator/Coordinator.js"

/** @since 0.1.0 */
export * as MemoryCoordinator from "./coordinator/MemoryCoordinator.js"

/** @since 0.1.0 */
export * as RedisCoordinator from "./coordinator/RedisCoordinator.js"

/**
 * The ThrottleKit server as one layer: the policies, the store and the doors in, the running gRPC server
 * out (what `throttlekit-effect serve` runs).
 *
 * @since 0.2.0
 */
export * as ThrottleKitServer from "./server/ThrottleKitServer.js"

/** The HTTP middleware for @effect/platform apps. @since 0.1.0 */
export * from "./http/index.js"
