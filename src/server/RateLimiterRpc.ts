/**
 * The `throttlekit.v1.RateLimiter` RPCs served from any `RateLimiter` (memory or Redis). A denial is a
 * normal response; a fault is a status: NOT_FOUND for an unknown policy, UNIMPLEMENTED for an operation
 * the policy's kind does not support, INVALID_ARGUMENT for bad input (the reference server silently
 * coerces a negative cost to 1; we refuse it and change nothing; a policy name over 256 UTF-8 bytes is
 * refused without being repeated), UNAVAILABLE when the store is down, INTERNAL otherwise. A
 * `cost`/`tokens` of 0 is the proto default and means 1.
 *
 * Peek and Forecast are answered on a token budget (meter) policy too, from the debit's own state (the
 * `PeekRequest` / `ForecastRequest` carry no kind, so the proto allows it): a deliberate extension, as the
 * reference server answers UNIMPLEMENTED there. UNIMPLEMENTED stays where it was (admitters, fair-escrow
 * policies, strategies without the operation).
 *
 * A NOT_FOUND lists the configured policies (as the reference server does) only to the callers
 * `listPolicies` trusts; the others learn only that the name they sent is not configured.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { RateLimiterError } from "../Errors.js"
import {
  admissionToWire,
  amountFromWire,
  decisionToWire,
  forecastToWire,
  hintFromWire,
  toInt64
} from "../grpc/convert.js"
import { RateLimiter } from "../grpc/generated/throttlekit_pb.js"
import { fromRateLimiterError, type GrpcStatusError } from "../grpc/status.js"
import type { RateLimiterService } from "../services/RateLimiter.js"
import { type CallContext, implement, type ServedService } from "./Service.js"

/**
 * How the RateLimiter service words its errors.
 *
 * @since 0.2.0
 * @category models
 */
export interface RateLimiterRpcOptions {
  /**
   * Whether the caller may see the configured policy names in a NOT_FOUND (default: no caller).
   * `ThrottleKitServer` trusts the callers its Monitor door answers, whose snapshot names every policy.
   */
  readonly listPolicies?: (context: CallContext) => boolean
}

/**
 * The RateLimiter service over `limiter`. Admit, Release and Heartbeat go through `limiter.leases`, so
 * the leases live wherever the backend keeps them (process memory, or Redis for a fleet of servers).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (limiter: RateLimiterService, options: RateLimiterRpcOptions = {}): ServedService => {
  const listPolicies = options.listPolicies ?? (() => false)
  // The caller is only looked at for an unknown policy: a trust check never runs on the hot path.
  const toStatus = (context: CallContext) => (error: RateLimiterError): GrpcStatusError =>
    fromRateLimiterError(error, error._tag === "PolicyNotFound" ? { listPolicies: listPolicies(context) } : {})
  return implement(RateLimiter, {
    check: (request, context) =>
      limiter.check(request.policy, request.key, amountFromWire(request.cost)).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(toStatus(context))
      ),
    checkMany: (request, context) =>
      limiter.checkMany(request.policy, request.keys, amountFromWire(request.cost)).pipe(
        Effect.map((decisions) => ({ decisions: decisions.map(decisionToWire) })),
        Effect.mapError(toStatus(context))
      ),
    peek: (request, context) =>
      limiter.peek(request.policy, request.key).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(toStatus(context))
      ),
    forecast: (request, context) =>
      limiter.forecast(request.policy, request.key, amountFromWire(request.cost)).pipe(
        Effect.map((forecast) => ({ forecast: forecastToWire(forecast) })),
        Effect.mapError(toStatus(context))
      ),
    debit: (request, context) =>
      limiter.debit(request.policy, request.key, amountFromWire(request.tokens)).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(toStatus(context))
      ),
    // A lease granted to a client that has gone (it cancelled, or its deadline passed) would hold its
    // slot until the TTL: it is released at once. An acquire interrupted while in flight is the store's
    // to undo (the Redis store sends the release behind it).
    admit: (request, context) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const hold = yield* hintFromWire(request.hold, "hold")
          const value = yield* hintFromWire(request.value, "value")
          const admission = yield* restore(limiter.leases.acquire(request.policy, request.key, {
            cost: amountFromWire(request.cost),
            hold,
            value
          }))
          if (admission.held && context.cancelled()) {
            yield* Effect.ignore(limiter.leases.release(admission.leaseId, false))
          }
          return admission
        })
      ).pipe(
        Effect.map(admissionToWire),
        Effect.mapError(toStatus(context))
      ),
    release: (request, context) =>
      limiter.leases.release(request.leaseId, request.dropped).pipe(
        Effect.as({}),
        Effect.mapError(toStatus(context))
      ),
    heartbeat: (request, context) =>
      limiter.leases.heartbeat(request.leaseIds).pipe(
        Effect.map((result) => ({
          liveIds: [...result.live],
          reclaimedIds: [...result.reclaimed],
          nextDeadline: toInt64(result.nextDeadline)
        })),
        Effect.mapError(toStatus(context))
      )
  })
}
