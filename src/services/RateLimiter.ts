/**
 * The `RateLimiter` service: one interface for every axis (rate, cost, concurrency) and every door
 * (memory, Redis, gRPC). A program written against it runs unchanged on any layer.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Admission, Decision, Forecast } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"
import { RateLimited } from "../Errors.js"

/**
 * Options of an admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface AdmitOptions {
  /** Rate-axis cost of a unified admitter (default 1). */
  readonly cost?: number
  /** Expected hold in ms, forwarded to the backend as a hint (default 0). */
  readonly hold?: number
  /** Value of the request, forwarded to the backend as a hint (default 0). */
  readonly value?: number
  /**
   * Renew the lease while it is held, for holds longer than the lease TTL (default false).
   * One batched heartbeat fiber per backend renews every kept-alive lease.
   */
  readonly keepAlive?: boolean
  /** Interrupt the holding fiber if the backend reclaims the lease anyway (default false). */
  readonly interruptOnReclaim?: boolean
}

/**
 * The answer to a heartbeat: which leases are still held, which were already reclaimed, and when the
 * next beat must arrive (epoch-ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface HeartbeatResult {
  readonly live: ReadonlyArray<string>
  readonly reclaimed: ReadonlyArray<string>
  readonly nextDeadline: number
}

/**
 * The lease operations under `admit`: what a server serves and what the admission keeper drives.
 * Application code uses the scoped `admit` instead.
 *
 * @since 0.1.0
 * @category models
 */
export interface Leases {
  /** The lease TTL in ms: a lease not renewed within it is reclaimed (as dropped). */
  readonly ttlMs: number
  /** Decides an admission and, when allowed, holds a slot under a fresh lease id. */
  readonly acquire: (
    policy: string,
    key: string,
    options?: Pick<AdmitOptions, "cost" | "hold" | "value">
  ) => Effect.Effect<Admission, RateLimiterError>
  /** Gives a slot back; `dropped` signals an overload. Unknown ids are ignored (idempotent). */
  readonly release: (leaseId: string, dropped: boolean) => Effect.Effect<void, RateLimiterError>
  /** Renews every listed lease that is still held. */
  readonly heartbeat: (leaseIds: ReadonlyArray<string>) => Effect.Effect<HeartbeatResult, RateLimiterError>
}

/**
 * The service interface. Costs, tokens and keys are validated first: bad input fails with
 * `InvalidArgument` and changes no state.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiterService {
  /** Names the backend in logs and errors ("memory", "redis", "service"). */
  readonly backend: string
  /** Consumes `cost` (default 1) from `key`'s limit. A denial is a `Decision` with `allowed = false`. */
  readonly check: (policy: string, key: string, cost?: number) => Effect.Effect<Decision, RateLimiterError>
  /** Checks many keys at one consistent instant; decisions come back in input order. */
  readonly checkMany: (
    policy: string,
    keys: ReadonlyArray<string>,
    cost?: number
  ) => Effect.Effect<ReadonlyArray<Decision>, RateLimiterError>
  /** The decision a 1-unit check would get now, without consuming anything. */
  readonly peek: (policy: string, key: string) => Effect.Effect<Decision, RateLimiterError>
  /** What `key` can still spend in units of `cost`, and when it replenishes. */
  readonly forecast: (policy: string, key: string, cost?: number) => Effect.Effect<Forecast, RateLimiterError>
  /** Spends `tokens` (default 1) of a token budget (the cost axis). */
  readonly debit: (policy: string, key: string, tokens?: number) => Effect.Effect<Decision, RateLimiterError>
  /**
   * Admits into a concurrency (or unified rate × concurrency) policy. A held slot is released when the
   * scope closes, as dropped when the scope closed by failure or interruption. A denial holds nothing.
   */
  readonly admit: (
    policy: string,
    key: string,
    options?: AdmitOptions
  ) => Effect.Effect<Admission, RateLimiterError, Scope.Scope>
  /** The lease operations under `admit`. */
  readonly leases: Leases
}

/**
 * The `RateLimiter` tag. Provide it with `MemoryBackend.layer`, `RedisBackend.layer` or `ServiceBackend.layer`.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("throttlekit-effect/RateLimiter")<RateLimiter, RateLimiterService>() {}

/**
 * Checks `key` and fails with `RateLimited` (carrying the decision) when denied, so `Effect.gen` code can
 * `yield*` a limit and let the error channel carry the denial.
 *
 * @since 0.1.0
 * @category combinators
 */
export const limit = (
  policy: string,
  key: string,
  cost?: number
): Effect.Effect<Decision, RateLimited | RateLimiterError, RateLimiter> =>
  Effect.flatMap(RateLimiter, (limiter) =>
    Effect.flatMap(
      limiter.check(policy, key, cost),
      (decision) =>
        decision.allowed ? Effect.succeed(decision) : Effect.fail(new RateLimited({ policy, key, decision }))
    ))

/**
 * Spends `tokens` of a budget and fails with `RateLimited` when the budget refuses it.
 *
 * @since 0.1.0
 * @category combinators
 */
export const spend = (
  policy: string,
  key: string,
  tokens?: number
): Effect.Effect<Decision, RateLimited | RateLimiterError, RateLimiter> =>
  Effect.flatMap(RateLimiter, (limiter) =>
    Effect.flatMap(
      limiter.debit(policy, key, tokens),
      (decision) =>
        decision.allowed ? Effect.succeed(decision) : Effect.fail(new RateLimited({ policy, key, decision }))
    ))

/**
 * Runs `self` inside an admission: the slot is held while it runs and released when it ends (as dropped
 * when it fails or is interrupted). A denied admission fails with `RateLimited` and `self` never runs.
 *
 * @since 0.1.0
 * @category combinators
 */
export const admitted: {
  (policy: string, key: string, options?: AdmitOptions): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RateLimited | RateLimiterError, R | RateLimiter>
} = (policy, key, options) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.scoped(
    Effect.flatMap(RateLimiter, (limiter) =>
      Effect.flatMap(
        limiter.admit(policy, key, options),
        (admission): Effect.Effect<A, E | RateLimited, R> =>
          admission.held
            ? self
            : Effect.fail(new RateLimited({ policy, key, decision: admission.decision }))
      ))
  )
