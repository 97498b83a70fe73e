/**
 * Shadow mode, as the front binds it: the bound operations of a policy marked `shadow: true` decide as
 * usual (the store below runs, writes and records exactly what it would for an enforced policy) and
 * answer every denial as an allowance (`Decision.shadowOf`: `shadowed` set, `retryAfterMs` 0). Only
 * shadowed policies are wrapped, so an enforced policy pays nothing.
 *
 * - `check`, `checkMany` (limiters), `check` (fair escrows), `debit` (meters): the denial's decision, allowed.
 *   The store was not written by the denial (a denial never consumes), so the state is exactly the
 *   enforced policy's under the same traffic: the would-be denials counted in shadow are the denials the
 *   same traffic gets with shadow off.
 * - `acquire` (admitters): a denied admission is answered allowed but holds no slot (`leaseId` "", no
 *   lease to release or renew, `bindingAxis` ""): the ceiling keeps counting only what it really admitted.
 * - `peek` and `forecast` are reads: they answer the real state, unchanged.
 *
 * @since 0.3.0
 * @internal
 */
import * as Effect from "effect/Effect"
import { Admission, type Decision, shadowOf } from "../Decision.js"
import type { BoundAdmitter, BoundFair, BoundLimiter, BoundMeter } from "../services/RateLimiterStore.js"

const allShadowed = (decisions: ReadonlyArray<Decision>): ReadonlyArray<Decision> => decisions.map(shadowOf)

/** A denied admission as a shadow-mode allowance that holds nothing. */
const admissionShadowOf = (admission: Admission): Admission =>
  admission.decision.allowed ? admission : new Admission({
    decision: shadowOf(admission.decision),
    leaseId: "",
    leaseExpiresAt: 0,
    bindingAxis: "",
    policyDenied: admission.policyDenied
  }, true)

/**
 * A limiter's operations in shadow mode.
 *
 * @since 0.3.0
 * @internal
 */
export const limiter = (bound: BoundLimiter): BoundLimiter => ({
  ...bound,
  check: (key, cost) => Effect.map(bound.check(key, cost), shadowOf),
  checkMany: (keys, cost) => Effect.map(bound.checkMany(keys, cost), allShadowed)
})

/**
 * A meter's operations in shadow mode.
 *
 * @since 0.3.0
 * @internal
 */
export const meter = (bound: BoundMeter): BoundMeter => ({
  ...bound,
  debit: (key, tokens) => Effect.map(bound.debit(key, tokens), shadowOf)
})

/**
 * An admitter's operations in shadow mode.
 *
 * @since 0.3.0
 * @internal
 */
export const admitter = (bound: BoundAdmitter): BoundAdmitter => ({
  acquire: (key, options) => Effect.map(bound.acquire(key, options), admissionShadowOf)
})

/**
 * A fair escrow's check in shadow mode.
 *
 * @since 0.3.0
 * @internal
 */
export const fair = (bound: BoundFair): BoundFair => ({
  check: (key, cost) => Effect.map(bound.check(key, cost), shadowOf)
})
