/**
 * The `throttlekit.v1.RateLimiter` RPCs served from any `RateLimiter` (memory or Redis). A denial is a
 * normal response; a fault is a status: NOT_FOUND for an unknown policy, UNIMPLEMENTED for an operation
 * the policy's kind does not support, INVALID_ARGUMENT for bad input (the reference server silently
 * coerces a negative cost to 1; we refuse it and change nothing), UNAVAILABLE when the store is down,
 * INTERNAL otherwise. A `cost`/`tokens` of 0 is the proto default and means 1.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import {
  admissionToWire,
  amountFromWire,
  decisionToWire,
  forecastToWire,
  hintFromWire,
  toInt64
} from "../grpc/convert.js"
import { RateLimiter } from "../grpc/generated/throttlekit_pb.js"
import { fromRateLimiterError } from "../grpc/status.js"
import type { RateLimiterService } from "../services/RateLimiter.js"
import { implement, type ServedService } from "./Service.js"

/**
 * The RateLimiter service over `limiter`. Admit, Release and Heartbeat go through `limiter.leases`, so
 * the leases live wherever the backend keeps them (process memory, or Redis for a fleet of servers).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (limiter: RateLimiterService): ServedService =>
  implement(RateLimiter, {
    check: (request) =>
      limiter.check(request.policy, request.key, amountFromWire(request.cost)).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(fromRateLimiterError)
      ),
    checkMany: (request) =>
      limiter.checkMany(request.policy, request.keys, amountFromWire(request.cost)).pipe(
        Effect.map((decisions) => ({ decisions: decisions.map(decisionToWire) })),
        Effect.mapError(fromRateLimiterError)
      ),
    peek: (request) =>
      limiter.peek(request.policy, request.key).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(fromRateLimiterError)
      ),
    forecast: (request) =>
      limiter.forecast(request.policy, request.key, amountFromWire(request.cost)).pipe(
        Effect.map((forecast) => ({ forecast: forecastToWire(forecast) })),
        Effect.mapError(fromRateLimiterError)
      ),
    debit: (request) =>
      limiter.debit(request.policy, request.key, amountFromWire(request.tokens)).pipe(
        Effect.map((decision) => ({ decision: decisionToWire(decision) })),
        Effect.mapError(fromRateLimiterError)
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
        Effect.mapError(fromRateLimiterError)
      ),
    release: (request) =>
      limiter.leases.release(request.leaseId, request.dropped).pipe(
        Effect.as({}),
        Effect.mapError(fromRateLimiterError)
      ),
    heartbeat: (request) =>
      limiter.leases.heartbeat(request.leaseIds).pipe(
        Effect.map((result) => ({
          liveIds: [...result.live],
          reclaimedIds: [...result.reclaimed],
          nextDeadline: toInt64(result.nextDeadline)
        })),
        Effect.mapError(fromRateLimiterError)
      )
  })
