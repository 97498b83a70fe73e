/**
 * The `RateLimiterAdmin` service: operator actions on the state of a key, kept apart from `RateLimiter`
 * so application code holding a limiter cannot reach them by accident (a program must be given this
 * tag's layer on purpose).
 *
 * - `reset(policy, key)`: the key reads as a fresh key's (its state is forgotten, a block on it lifted);
 * - `penalize(policy, key, units)`: the key's remaining goes down by `units`, to none left at most (a
 *   check of the units left, written as a check writes: gcra moves its TAT forward, a token bucket loses
 *   tokens, a window counts them, a log adds entries at now);
 * - `reward(policy, key, units)`: the key's remaining goes up by `units`, to a fresh key's at most (gcra
 *   moves its TAT back, a token bucket gains tokens, a window's count goes down, newest tick first, a log
 *   loses its newest entries);
 * - `block(policy, key, duration)`: every check of the key is denied until the block ends, with
 *   `resetAt` = the block's end and `retryAfterMs` = the time left; its state is kept (see each door for
 *   who honours a block); `unblock(policy, key)` lifts it.
 *
 * Policies: limiters and meters (token budgets) serve all five; a unified admitter's rate axis serves them
 * too (its concurrency slots are leases: release them); a plain concurrency admitter and a fair-escrow
 * policy serve none (`OperationNotSupported`).
 *
 * Every call is checked as the front checks: the policy (unknown: `PolicyNotFound`; another kind:
 * `OperationNotSupported`; a name over 256 UTF-8 bytes: `InvalidArgument`), then the key, then `units` (a
 * whole number from 1 to 2^53 − 1) or `duration` (a whole number of ms from 1 to `MAX_BLOCK_MS`): bad
 * input fails with a typed error and changes nothing. Penalize, reward, block and unblock answer the
 * `Decision` a 1-unit peek of the key sees afterwards.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Front, MemoryBackend, RateLimiter, RateLimiterAdmin } from "throttlekit-effect"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter
 *   const admin = yield* RateLimiterAdmin.RateLimiterAdmin
 *   yield* admin.block("api", "user-42", "1 minute") // an abusive caller sits out a minute
 *   const denied = yield* limiter.check("api", "user-42")
 *   yield* admin.reset("api", "user-42") // and is forgiven
 *   const allowed = yield* limiter.check("api", "user-42")
 *   return [denied.allowed, allowed.allowed]
 * })
 *
 * // One store, two services: the limiter for the application, the admin for the operator's code.
 * const store = MemoryBackend.layerStore({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 10_000,
 *     strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }
 *   }]
 * })
 * const layer = Layer.merge(Front.layer(), RateLimiterAdmin.layer).pipe(Layer.provide(store))
 *
 * Effect.runPromise(program.pipe(Effect.provide(layer))).then(console.log) // [ false, true ]
 * ```
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Decision } from "../Decision.js"
import {
  InvalidArgument,
  type Operation,
  OperationNotSupported,
  PolicyNotFound,
  type RateLimiterError
} from "../Errors.js"
import { MAX_HORIZON_MS, type Policy } from "../Policy.js"
import * as Validate from "../Validate.js"
import { type BoundAdmin, isUnsupported, type RateLimiterStore, Store } from "./RateLimiterStore.js"

/**
 * The longest block, in ms (about 100 years: every `resetAt` stays a safe integer).
 *
 * @since 0.3.0
 * @category constants
 */
export const MAX_BLOCK_MS = MAX_HORIZON_MS

/**
 * The admin operations. Each checks its arguments first (policy, key, then units or duration): bad input
 * fails with a typed error and changes no state.
 *
 * @since 0.3.0
 * @category models
 */
export interface RateLimiterAdminService {
  /** Names the backend ("memory", "redis", "service"). */
  readonly backend: string
  /** Forgets `key`'s state (and any block on it): it reads as a fresh key's. */
  readonly reset: (policy: string, key: string) => Effect.Effect<void, RateLimiterError>
  /** Takes `units` from `key`, to none left at most; answers the peek after. */
  readonly penalize: (policy: string, key: string, units: number) => Effect.Effect<Decision, RateLimiterError>
  /** Gives `units` back to `key`, to a fresh key's capacity at most; answers the peek after. */
  readonly reward: (policy: string, key: string, units: number) => Effect.Effect<Decision, RateLimiterError>
  /**
   * Denies every check of `key` for `duration` (whole ms, at least 1) from now: answers the denial a check
   * gets meanwhile (`resetAt` = the block's end). A later block replaces an earlier one.
   */
  readonly block: (
    policy: string,
    key: string,
    duration: Duration.DurationInput
  ) => Effect.Effect<Decision, RateLimiterError>
  /** Lifts a block on `key` (none: nothing changes); answers the peek after. */
  readonly unblock: (policy: string, key: string) => Effect.Effect<Decision, RateLimiterError>
}

/**
 * The `RateLimiterAdmin` tag: `RateLimiterAdmin.layer` over a door's store (`MemoryBackend.layerStore`,
 * `RedisBackend.layerStore`), or `AdminBackend.layer` for a server's admin service.
 *
 * @since 0.3.0
 * @category tags
 */
export class RateLimiterAdmin extends Context.Tag("throttlekit-effect/RateLimiterAdmin")<
  RateLimiterAdmin,
  RateLimiterAdminService
>() {}

const invalid = (argument: string, reason: string) => new InvalidArgument({ argument, reason })

/**
 * Why `units` is not a usable amount, or `undefined` (a whole number from 1 to 2^53 − 1).
 *
 * @since 0.3.0
 * @category validation
 */
export const unitsProblem = (units: number): string | undefined => Validate.costProblem(units)

/**
 * The duration of a block in whole ms, or why it is not one (a whole number of ms from 1 to
 * `MAX_BLOCK_MS`).
 *
 * @since 0.3.0
 * @category validation
 */
export const blockMillis = (duration: Duration.DurationInput): number | InvalidArgument => {
  const decoded = Duration.decodeUnknown(duration)
  if (Option.isNone(decoded)) return invalid("duration", "must be a duration (e.g. \"5 minutes\" or a number of ms)")
  const ms = Duration.toMillis(decoded.value)
  if (Number.isNaN(ms)) return invalid("duration", "must be a number of ms, got NaN")
  if (!Number.isFinite(ms)) return invalid("duration", `must be finite, got ${ms}`)
  if (!Number.isInteger(ms)) return invalid("duration", `must be a whole number of ms, got ${ms}`)
  if (ms < 1) return invalid("duration", `must be at least 1 ms, got ${ms}`)
  if (ms > MAX_BLOCK_MS) return invalid("duration", `must be at most ${MAX_BLOCK_MS} ms, got ${ms}`)
  return ms
}

/** Why no admin operation serves a policy of this kind, or `undefined` when one does. */
const kindProblem = (policy: Policy): string | undefined => {
  switch (policy.kind) {
    case "limiter":
    case "meter":
      return undefined
    case "admitter":
      return policy.rate === undefined
        ? "a concurrency admitter keeps no keyed state to change (its slots are leases: release them)"
        : undefined
    case "fair":
      return "a fair-escrow policy's tenants are not keys an admin can change"
  }
}

/**
 * The admin over `store`. A local store's policies are bound once, here; a store without admin
 * operations (a remote one: use `AdminBackend`) answers `OperationNotSupported` for every policy it
 * knows.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (store: RateLimiterStore): RateLimiterAdminService => {
  if (store._tag === "Remote") {
    const remote = (operation: Operation) => (policy: string) =>
      Effect.fail(
        new OperationNotSupported({
          policy,
          operation,
          reason: "the Service door's admin is AdminBackend (the server's admin service)"
        })
      )
    return {
      backend: store.backend,
      reset: remote("reset"),
      penalize: remote("penalize"),
      reward: remote("reward"),
      block: remote("block"),
      unblock: remote("unblock")
    }
  }
  const bound = new Map<string, BoundAdmin | string>()
  for (const policy of store.policies) {
    const problem = kindProblem(policy)
    bound.set(
      policy.name,
      problem ?? store.admin?.(policy) ?? `the ${store.backend} store serves no admin operations`
    )
  }

  /** The bound operation, or the fault of the policy (checked before any argument). */
  const operationOf = <K extends keyof BoundAdmin>(
    policy: string,
    operation: K
  ): Exclude<BoundAdmin[K], { readonly _tag: "Unsupported" }> | RateLimiterError => {
    const admin = bound.get(policy)
    if (admin === undefined) {
      const tooLong = Validate.policyNameProblem(policy)
      return tooLong === undefined
        ? new PolicyNotFound({ policy, configured: store.policies.names })
        : invalid("policy", tooLong)
    }
    if (typeof admin === "string") return new OperationNotSupported({ policy, operation, reason: admin })
    const served = admin[operation]
    return isUnsupported(served)
      ? new OperationNotSupported({ policy, operation, reason: served.reason })
      : served as Exclude<BoundAdmin[K], { readonly _tag: "Unsupported" }>
  }

  const reset: RateLimiterAdminService["reset"] = (policy, key) => {
    const served = operationOf(policy, "reset")
    if (typeof served !== "function") return Effect.fail(served)
    const keyProblem = Validate.keyProblem(key)
    return keyProblem === undefined ? served(key) : Effect.fail(invalid("key", keyProblem))
  }

  const unblock: RateLimiterAdminService["unblock"] = (policy, key) => {
    const served = operationOf(policy, "unblock")
    if (typeof served !== "function") return Effect.fail(served)
    const keyProblem = Validate.keyProblem(key)
    return keyProblem === undefined ? served(key) : Effect.fail(invalid("key", keyProblem))
  }

  const counted = (operation: "penalize" | "reward") => (policy: string, key: string, units: number) => {
    const served = operationOf(policy, operation)
    if (typeof served !== "function") return Effect.fail(served)
    const keyProblem = Validate.keyProblem(key)
    if (keyProblem !== undefined) return Effect.fail(invalid("key", keyProblem))
    const problem = unitsProblem(units)
    return problem === undefined ? served(key, units) : Effect.fail(invalid("units", problem))
  }

  const block: RateLimiterAdminService["block"] = (policy, key, duration) => {
    const served = operationOf(policy, "block")
    if (typeof served !== "function") return Effect.fail(served)
    const keyProblem = Validate.keyProblem(key)
    if (keyProblem !== undefined) return Effect.fail(invalid("key", keyProblem))
    const ms = blockMillis(duration)
    return typeof ms === "number" ? served(key, ms) : Effect.fail(ms)
  }

  return {
    backend: store.backend,
    reset,
    penalize: counted("penalize"),
    reward: counted("reward"),
    block,
    unblock
  }
}

/**
 * The admin over the `Store` in context: provide the same store to the front (`Front.layer()`) and to this
 * layer, and both see the same keys.
 *
 * @since 0.3.0
 * @category layers
 */
export const layer: Layer.Layer<RateLimiterAdmin, never, Store> = Layer.effect(
  RateLimiterAdmin,
  Effect.map(Store, make)
)
