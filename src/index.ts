/**
 * throttlekit-effect: ThrottleKit for TypeScript and Effect 3.x. Govern rate, concurrency and cost with
 * typed decisions and typed errors, through backends swapped with one Layer.
 *
 * This root entry holds what every program uses — the `RateLimiter` service and its combinators, the
 * `Decision`, the errors, the policies and the in-process Memory door — and loads no driver: the Redis
 * door is `throttlekit-effect/redis`, gRPC to a server is `throttlekit-effect/service`, and the server,
 * Fleet, Monitor and HTTP parts have entries of their own.
 *
 * @since 0.1.0
 */

export {
  /** @since 0.1.0 */
  Admission,
  /** @since 0.1.0 */
  BindingAxis,
  /** @since 0.1.0 */
  Decision,
  /** @since 0.1.0 */
  type DecisionData,
  /** @since 0.1.0 */
  Forecast,
  /** @since 0.3.0 */
  MultiDecision
} from "./Decision.js"

export {
  /** @since 0.1.0 */
  BackendError,
  /** @since 0.3.0 */
  CapacityExceeded,
  /** @since 0.1.0 */
  InvalidArgument,
  /** @since 0.1.0 */
  Operation,
  /** @since 0.1.0 */
  OperationNotSupported,
  /** @since 0.2.0 */
  OutcomeUnknown,
  /** @since 0.1.0 */
  PolicyNotFound,
  /** @since 0.1.0 */
  RateLimited,
  /** @since 0.1.0 */
  type RateLimiterError,
  /** @since 0.1.0 */
  ServiceUnavailable,
  /** @since 0.1.0 */
  Unauthenticated
} from "./Errors.js"

export {
  /** @since 0.1.0 */
  type AdmitOptions,
  /** @since 0.1.0 */
  admitted,
  /** @since 0.3.0 */
  type DimensionCheck,
  /** @since 0.1.0 */
  type FrontOptions,
  /** @since 0.1.0 */
  type HeartbeatResult,
  /** @since 0.1.0 */
  type Leases,
  /** @since 0.1.0 */
  limit,
  /** @since 0.3.0 */
  limitAll,
  /** @since 0.3.0 */
  type LimitOptions,
  /** @since 0.3.0 */
  MAX_CHECK_ALL,
  /** @since 0.1.0 */
  RateLimiter,
  /** @since 0.1.0 */
  type RateLimiterService,
  /** @since 0.1.0 */
  spend,
  /** @since 0.3.0 */
  type SpendOptions
} from "./services/RateLimiter.js"

/**
 * The front over a store (`Front.make`, `Front.layer`): what a custom door builds its `RateLimiter` with.
 *
 * @since 0.2.0
 */
export * as Front from "./services/RateLimiter.js"

/**
 * The store shapes a door implements (`LocalStore`, `RemoteStore`, the `Store` tag).
 *
 * @since 0.2.0
 */
export * as RateLimiterStore from "./services/RateLimiterStore.js"

/**
 * The admin operations on keys (`RateLimiterAdmin.RateLimiterAdmin`: reset, penalize, reward, block,
 * unblock), a service of its own so application code cannot reach them by accident: `RateLimiterAdmin.layer`
 * over a door's store.
 *
 * @since 0.3.0
 */
export * as RateLimiterAdmin from "./services/RateLimiterAdmin.js"

/**
 * The validated set of policies every layer reads (`PolicySet.make`, `PolicySet.validate`), and
 * `PolicyError`, what a rejected policy or policy file fails with.
 *
 * @since 0.2.0
 */
export {
  /** @since 0.2.0 */
  PolicyError,
  /** @since 0.2.0 */
  PolicySet
} from "./PolicySet.js"

/**
 * The policy file loader (`PolicyFile.load`, `parse`, `decode`). Called `Config` before 0.2; renamed so it
 * no longer shadows Effect's own `Config`.
 *
 * @since 0.2.0
 */
export * as PolicyFile from "./PolicyFile.js"

/**
 * The policy schemas (`Policy.Policy`, `Policy.LimiterPolicy`, …), `Policy.maxCost` and `Policy.capacity`.
 *
 * @since 0.1.0
 */
export * as Policy from "./Policy.js"

/**
 * The in-process door: `MemoryBackend.layer`, `layerFile`, `layerConfig`, and the synchronous `Local`.
 *
 * @since 0.1.0
 */
export * as MemoryBackend from "./layers/MemoryBackend.js"

/**
 * Shaping: `shaped(shaper, key)` delays an effect to its turn at a constant rate (a leaky bucket), or
 * fails with `RateLimited` when the queue is too long; the `Shaper` tag, its front and store shapes.
 *
 * @since 0.3.0
 */
export {
  /** @since 0.3.0 */
  shaped,
  /** @since 0.3.0 */
  Shaper
} from "./services/Shaper.js"

/**
 * The shaper's models, front (`Shaper.make`) and store shapes.
 *
 * @since 0.3.0
 */
export * as Shaping from "./services/Shaper.js"

/**
 * The in-process shaper store: `MemoryShaper.layer`.
 *
 * @since 0.3.0
 */
export * as MemoryShaper from "./layers/MemoryShaper.js"
