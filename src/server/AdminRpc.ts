/**
 * The `throttlekit_effect.admin.v1.RateLimiterAdmin` service (proto/admin.proto, this package's own, not
 * part of the throttlekit.v1 contract): reset, penalize, reward, block and unblock a key of the served
 * store, through `RateLimiterAdmin`.
 *
 * Order of a call: auth first (`x-admin-secret` or `authorization: Bearer`; without a secret, loopback
 * callers only; see `Auth`), so an unauthorised caller learns nothing about the policies; then the
 * admin's own checks (policy → key → units / duration, as the library's), mapped to statuses as the
 * RateLimiter RPCs' are: NOT_FOUND (listing the configured policies: the caller is trusted),
 * UNIMPLEMENTED, INVALID_ARGUMENT (nothing changed; `units` or `duration_ms` 0 too, an admin amount is
 * always explicit), UNAVAILABLE.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type { Decision } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"
import { decisionToWire } from "../grpc/convert.js"
import { RateLimiterAdmin } from "../grpc/generated/admin_pb.js"
import { fromRateLimiterError, type GrpcStatusError } from "../grpc/status.js"
import type { RateLimiterAdminService } from "../services/RateLimiterAdmin.js"
import { adminAuth, authorize } from "./Auth.js"
import { type CallContext, implement, type ServedService } from "./Service.js"

/**
 * Options of the admin service.
 *
 * @since 0.3.0
 * @category models
 */
export interface AdminRpcOptions {
  /** The admin over the served store. */
  readonly admin: RateLimiterAdminService
  /** The secret every caller must present (`x-admin-secret`); none means loopback callers only. */
  readonly secret: Option.Option<Redacted.Redacted<string>>
}

/** An authorised caller may see the configured policy names in a NOT_FOUND. */
const toStatus = (error: RateLimiterError): GrpcStatusError => fromRateLimiterError(error, { listPolicies: true })

const answered = (decision: Decision) => ({ decision: decisionToWire(decision) })

/** An int64 off the wire as a number (the admin checks its range: beyond 2^53 − 1 is refused there). */
const wireNumber = (value: bigint): number => Number(value)

/**
 * The admin service over `options.admin`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: AdminRpcOptions): ServedService => {
  const { admin } = options
  const auth = adminAuth(options.secret)
  /** Auth first, then the admin's own answer, its faults as statuses. */
  const guarded = <A>(context: CallContext, effect: Effect.Effect<A, RateLimiterError>) =>
    Effect.zipRight(authorize(auth, context), Effect.mapError(effect, toStatus))
  /** `guarded`, for an operation answering a decision. */
  const decided = (context: CallContext, effect: Effect.Effect<Decision, RateLimiterError>) =>
    guarded(context, Effect.map(effect, answered))
  return implement(RateLimiterAdmin, {
    reset: (request, context) => guarded(context, Effect.as(admin.reset(request.policy, request.key), {})),
    penalize: (request, context) =>
      decided(context, admin.penalize(request.policy, request.key, wireNumber(request.units))),
    reward: (request, context) =>
      decided(context, admin.reward(request.policy, request.key, wireNumber(request.units))),
    block: (request, context) =>
      decided(context, admin.block(request.policy, request.key, wireNumber(request.durationMs))),
    unblock: (request, context) => decided(context, admin.unblock(request.policy, request.key))
  })
}
