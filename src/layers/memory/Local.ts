/**
 * The Memory door's synchronous `Local` door: a limiter whose `check` is a plain function returning an
 * `Either`, for hot loops where an Effect step per call would cost more than the check itself. It runs
 * on the key store (`KeyStore.ts`) that the Memory store of the same layer uses, so the two count
 * against the same limits. `MemoryBackend` provides it (`Local`, `makeLocal`) and re-exports its types.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import { type Decision, fromData } from "../../Decision.js"
import { InvalidArgument, type OperationNotSupported, type PolicyNotFound } from "../../Errors.js"
import * as Validate from "../../Validate.js"
import { type PolicyStore, RateState } from "./KeyStore.js"

/**
 * The faults of a synchronous check: a bad key or cost, an unknown policy, or a policy that is not a
 * rate limiter. (A subset of `RateLimiterError`.)
 *
 * @since 0.1.0
 * @category errors
 */
export type LocalError = InvalidArgument | PolicyNotFound | OperationNotSupported

/**
 * The Memory door's synchronous limiter: plain functions, no fiber, no promise. A denial is a `Decision`
 * with `allowed = false` in `Right`; a fault (`InvalidArgument` for a bad key or cost, `PolicyNotFound`,
 * `OperationNotSupported` for a meter or admitter policy) is a tagged error in `Left`. Nothing throws,
 * and a rejected call changes no state.
 *
 * `Either` is yieldable in `Effect.gen` (`const decision = yield* local.check("api", key)` fails the
 * effect with the `Left`), so an Effect program can take the limiter once and check per item without
 * an Effect step per check.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalLimiter {
  /** Consumes `cost` units (default 1) of `key` under the limiter policy `name`. */
  readonly check: (name: string, key: string, cost?: number) => Either.Either<Decision, LocalError>
  /**
   * The check of the limiter policy `name`, bound once: `(key, cost?)` as `check` answers it, without
   * looking the policy up per call (for a hot loop on one policy). An unknown or non-limiter policy is
   * the `Left` here; a bad key or cost is the `Left` of each call.
   */
  readonly limiter: (name: string) => Either.Either<LocalCheck, LocalError>
  /** What a cost-1 check would decide now, consuming nothing. */
  readonly peek: (name: string, key: string) => Either.Either<Decision, LocalError>
}

/**
 * The check of one limiter policy, bound by `LocalLimiter.limiter`.
 *
 * @since 0.1.0
 * @category models
 */
export type LocalCheck = (key: string, cost?: number) => Either.Either<Decision, LocalError>

/**
 * A synchronous limiter over `store`, reading time (epoch-ms) from `now`.
 *
 * @since 0.1.0
 * @internal
 */
export const makeLocalLimiter = (store: PolicyStore, now: () => number): LocalLimiter => ({
  check: (name, key, cost = 1) => {
    const rate = store.limiterFor(name, cost)
    if (rate === undefined) return Either.left(store.faultOf(name, key, cost, "check"))
    const decision = rate.checkUnvalidated(key, now(), cost)
    if (decision === undefined) return Either.left(store.faultOf(name, key, cost, "check"))
    return Either.right(decision)
  },
  limiter: (name) => {
    const rate = store.rateOf(name, "check")
    if (!(rate instanceof RateState)) return Either.left(rate)
    return Either.right((key, cost = 1) => {
      const decision = Number.isSafeInteger(cost) && cost >= 1 ? rate.checkUnvalidated(key, now(), cost) : undefined
      return decision === undefined
        ? Either.left(store.faultOf(name, key, cost, "check"))
        : Either.right(decision)
    })
  },
  peek: (name, key) => {
    const rate = store.rateOf(name, "peek")
    if (!(rate instanceof RateState)) return Either.left(rate)
    const keyProblem = Validate.keyProblem(key)
    if (keyProblem !== undefined) return Either.left(new InvalidArgument({ argument: "key", reason: keyProblem }))
    return Either.right(fromData(rate.peek(key, now())))
  }
})
