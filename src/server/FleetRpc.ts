/**
 * The `throttlekit.v1.Fleet` service: `Reserve` leases a share of a `federated:` policy's global
 * per-window budget to a remote client, which then spends it locally (tier 2). It draws from the same
 * coordinator budgets as the policy's `Check` (tier 1), so servers and clients share one `limit` per
 * window per domain.
 *
 * Order of a call (as the reference server): auth first (`x-fleet-secret`; see `Auth`) → the policy (not
 * a federated policy → NOT_FOUND; a name over 256 UTF-8 bytes → INVALID_ARGUMENT, not repeated) → the axis (AXIS_CONCURRENCY → UNIMPLEMENTED; the others are the rate
 * budget) → `wants` (0, the proto default, means 1; a negative or oversized value is INVALID_ARGUMENT,
 * where the reference silently coerces it to 1) → the grant:
 * `capacity` 0..wants (0 = refused), `expiry_ms` = the window boundary by the store's clock,
 * `refresh_interval_ms` = max(1, expiry − now), `safe_capacity` = capacity, `retry_after_ms` =
 * max(0, expiry − now) when refused (else 0), `limit` = the per-window budget.
 * `caller.domain` selects the budget ("" = the policy name); `client_id`, `region`, `priority`, `has` and
 * `used` are accepted and not used.
 *
 * @since 0.1.0
 */
import type { MessageInitShape } from "@bufbuild/protobuf"
import { status as Status } from "@grpc/grpc-js"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import { type CoordinatorService, federatedKey, federatedLease, type Grant } from "../coordinator/Coordinator.js"
import { isWindowed, type WindowedStrategy } from "../coordinator/reserve.js"
import { toInt64 } from "../grpc/convert.js"
import { Axis, Fleet, type LeaseSchema } from "../grpc/generated/throttlekit_pb.js"
import { fromRateLimiterError, statusError } from "../grpc/status.js"
import type { Policy } from "../Policy.js"
import { policyNameProblem } from "../Validate.js"
import { authorize, fleetAuth } from "./Auth.js"
import { implement, type ServedService } from "./Service.js"

/**
 * Options of the Fleet service.
 *
 * @since 0.1.0
 * @category models
 */
export interface FleetRpcOptions {
  /**
   * The served policies; the `federated:` ones are leasable. Read on each call: an object whose
   * `policies` changes (a live reload) is followed.
   */
  readonly policies: ReadonlyArray<Policy> | { readonly policies: ReadonlyArray<Policy> }
  /** The coordinator the policies' checks lease from too. */
  readonly coordinator: CoordinatorService
  /** The secret every caller must present (`x-fleet-secret`); none means loopback callers only. */
  readonly secret: Option.Option<Redacted.Redacted<string>>
}

/** A leasable policy: its windowed strategy and its coordinator prefix. */
interface Leasable {
  readonly name: string
  readonly strategy: WindowedStrategy
  readonly prefix: string
}

/**
 * The leasable (`federated:`) policies of a policy list, by name.
 *
 * @since 0.1.0
 * @category utils
 */
export const leasablePolicies = (
  policies: FleetRpcOptions["policies"]
): ReadonlyMap<string, Leasable> => {
  const list = "policies" in policies ? policies.policies : policies
  const leasable = new Map<string, Leasable>()
  for (const policy of list) {
    if (policy.kind === "limiter" && policy.federated !== undefined && isWindowed(policy.strategy)) {
      leasable.set(policy.name, { name: policy.name, strategy: policy.strategy, prefix: policy.federated.prefix })
    }
  }
  return leasable
}

/**
 * The wire lease of a coordinator grant made at `now`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const leaseOf = (grant: Grant, now: number): MessageInitShape<typeof LeaseSchema> => {
  const untilBoundary = grant.expiresAt - now
  return {
    capacity: toInt64(grant.granted),
    expiryMs: toInt64(grant.expiresAt),
    refreshIntervalMs: toInt64(Math.max(1, untilBoundary)),
    safeCapacity: toInt64(grant.granted),
    retryAfterMs: toInt64(grant.granted === 0 ? Math.max(0, untilBoundary) : 0),
    limit: toInt64(grant.limit)
  }
}

/**
 * `wants` off the wire: 0 means 1; negative or beyond 2^53 − 1 is INVALID_ARGUMENT.
 *
 * @since 0.1.0
 * @category decoding
 */
export const wantsFromWire = (wants: bigint) => {
  if (wants === 0n) return Effect.succeed(1)
  if (wants < 0n) {
    return Effect.fail(statusError(Status.INVALID_ARGUMENT, `invalid wants: must not be negative, got ${wants}`))
  }
  if (wants > BigInt(Number.MAX_SAFE_INTEGER)) {
    return Effect.fail(statusError(Status.INVALID_ARGUMENT, `invalid wants: must be at most 2^53 - 1, got ${wants}`))
  }
  return Effect.succeed(Number(wants))
}

/**
 * The Fleet service over `options.coordinator`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: FleetRpcOptions): ServedService => {
  const source = options.policies
  let list: ReadonlyArray<Policy> | undefined
  let leasable: ReadonlyMap<string, Leasable> = new Map()
  /** The leasable policies now, recomputed only when the served list has changed (a reload). */
  const leasableNow = () => {
    const now = "policies" in source ? source.policies : source
    if (now !== list) {
      list = now
      leasable = leasablePolicies(now)
    }
    return leasable
  }
  const auth = fleetAuth(options.secret)
  return implement(Fleet, {
    reserve: (request, context) =>
      Effect.gen(function*() {
        yield* authorize(auth, context)
        const policy = leasableNow().get(request.policy)
        if (policy === undefined) {
          // No policy name is longer than MAX_POLICY_BYTES: a longer one is refused, not repeated back.
          const tooLong = policyNameProblem(request.policy)
          return yield* Effect.fail(
            tooLong === undefined
              ? statusError(
                Status.NOT_FOUND,
                `fleet: no leasable policy ${JSON.stringify(request.policy)} (Reserve serves federated: policies)`
              )
              : statusError(Status.INVALID_ARGUMENT, `invalid policy: ${tooLong}`)
          )
        }
        if (request.axis === Axis.CONCURRENCY) {
          return yield* Effect.fail(
            statusError(Status.UNIMPLEMENTED, "fleet: the concurrency axis is not leasable")
          )
        }
        const wants = yield* wantsFromWire(request.wants)
        const domain = request.caller === undefined || request.caller.domain === ""
          ? policy.name
          : request.caller.domain
        const grant = yield* federatedLease(
          options.coordinator,
          policy.strategy,
          federatedKey(policy.prefix, domain),
          wants
        ).pipe(Effect.mapError(fromRateLimiterError))
        const now = yield* Clock.currentTimeMillis
        return { lease: leaseOf(grant, now) }
      })
  })
}
