/**
 * Explicit conversions between the domain values (JS numbers) and the wire (proto int64 as bigint).
 * Domain integers are whole numbers within 2^53 (epoch-ms, counts); the wire carries 64-bit integers.
 *
 * @since 0.1.0
 */
import type { MessageInitShape } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import {
  Admission,
  BindingAxis,
  type Decision,
  type DecisionData,
  decisionOf,
  Forecast,
  fromData
} from "../Decision.js"
import type { ForecastData } from "../engine/types.js"
import { BackendError, InvalidArgument } from "../Errors.js"
import type * as pb from "./generated/throttlekit_pb.js"
import type { DecisionSchema, ForecastSchema } from "./generated/throttlekit_pb.js"

const INT64_MAX = 2n ** 63n - 1n
const INT64_MIN = -(2n ** 63n)

/**
 * A domain integer as an int64: truncated toward zero, clamped to the int64 range, NaN as 0.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toInt64 = (n: number): bigint => {
  if (Number.isNaN(n)) return 0n
  if (n === Number.POSITIVE_INFINITY) return INT64_MAX
  if (n === Number.NEGATIVE_INFINITY) return INT64_MIN
  const big = BigInt(Math.trunc(n))
  return big > INT64_MAX ? INT64_MAX : big < INT64_MIN ? INT64_MIN : big
}

/**
 * An int64 read as a JS number (exact up to 2^53, the range every decision field stays in).
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromInt64 = (n: bigint): number => Number(n)

/**
 * A request's cost, tokens or wants: 0 (unset) means 1, as the contract says. Anything else is passed
 * on as a number for the backend to validate (a negative or oversized value is then `InvalidArgument`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const amountFromWire = (n: bigint): number => n === 0n ? 1 : Number(n)

/**
 * A non-negative hint (`hold`, `value`) from the wire; a negative or oversized one is `InvalidArgument`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const hintFromWire = (n: bigint, argument: string): Effect.Effect<number, InvalidArgument> =>
  n < 0n
    ? Effect.fail(new InvalidArgument({ argument, reason: `must not be negative, got ${n}` }))
    : n > BigInt(Number.MAX_SAFE_INTEGER)
    ? Effect.fail(new InvalidArgument({ argument, reason: `must be at most 2^53 - 1, got ${n}` }))
    : Effect.succeed(Number(n))

/**
 * A decision as its wire message.
 *
 * @since 0.1.0
 * @category encoding
 */
export const decisionToWire = (d: DecisionData): MessageInitShape<typeof DecisionSchema> => ({
  allowed: d.allowed,
  limit: toInt64(d.limit),
  remaining: toInt64(d.remaining),
  resetAt: toInt64(d.resetAt),
  retryAfterMs: toInt64(d.retryAfterMs)
})

/**
 * A forecast as its wire message.
 *
 * @since 0.1.0
 * @category encoding
 */
export const forecastToWire = (f: ForecastData): MessageInitShape<typeof ForecastSchema> => ({
  spendableNow: toInt64(f.spendableNow),
  nextReplenishAt: toInt64(f.nextReplenishAt),
  fullAt: toInt64(f.fullAt)
})

const missing = (backend: string, field: string) =>
  new BackendError({ backend, code: "PROTOCOL", detail: `the response has no ${field}` })

/**
 * A wire decision as a `Decision`; a response without one is a protocol fault (`BackendError`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decisionFromWire = (
  d: pb.Decision | undefined,
  backend: string
): Effect.Effect<Decision, BackendError> =>
  d === undefined
    ? Effect.fail(missing(backend, "decision"))
    : Effect.succeed(fromData({
      allowed: d.allowed,
      limit: fromInt64(d.limit),
      remaining: fromInt64(d.remaining),
      resetAt: fromInt64(d.resetAt),
      retryAfterMs: fromInt64(d.retryAfterMs)
    }))

/**
 * A `CheckMany` answer's wire decisions as `Decision`s, in key order: one Effect for the whole batch, a
 * plain loop inside. An answer with another count than `count` keys, or a missing decision, is a
 * protocol fault (`BackendError`).
 *
 * @since 0.3.0
 * @category decoding
 */
export const decisionsFromWire = (
  wire: ReadonlyArray<pb.Decision>,
  count: number,
  backend: string
): Effect.Effect<Array<Decision>, BackendError> => {
  if (wire.length !== count) {
    return Effect.fail(
      new BackendError({ backend, code: "PROTOCOL", detail: `${wire.length} decisions for ${count} keys` })
    )
  }
  const decisions = new Array<Decision>(count)
  for (let i = 0; i < count; i++) {
    const d = wire[i]
    if (d === undefined) return Effect.fail(missing(backend, "decision"))
    decisions[i] = decisionOf(
      d.allowed,
      fromInt64(d.limit),
      fromInt64(d.remaining),
      fromInt64(d.resetAt),
      fromInt64(d.retryAfterMs)
    )
  }
  return Effect.succeed(decisions)
}

/**
 * A wire forecast as a `Forecast`; a response without one is a protocol fault (`BackendError`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const forecastFromWire = (
  f: pb.Forecast | undefined,
  backend: string
): Effect.Effect<Forecast, BackendError> =>
  f === undefined
    ? Effect.fail(missing(backend, "forecast"))
    : Effect.succeed(
      new Forecast({
        spendableNow: fromInt64(f.spendableNow),
        nextReplenishAt: fromInt64(f.nextReplenishAt),
        fullAt: fromInt64(f.fullAt)
      }, true)
    )

const bindingAxes: ReadonlyArray<string> = BindingAxis.literals
const isBindingAxis = (axis: string): axis is BindingAxis => bindingAxes.includes(axis)

/**
 * A wire admission as an `Admission`; a missing decision or an unknown binding axis is a protocol fault.
 *
 * @since 0.1.0
 * @category decoding
 */
export const admissionFromWire = (
  response: pb.AdmitResponse,
  backend: string
): Effect.Effect<Admission, BackendError> =>
  Effect.flatMap(decisionFromWire(response.decision, backend), (decision) =>
    isBindingAxis(response.bindingAxis)
      ? Effect.succeed(
        new Admission({
          decision,
          leaseId: response.leaseId,
          leaseExpiresAt: fromInt64(response.leaseExpiresAt),
          bindingAxis: response.bindingAxis,
          policyDenied: response.policyDenied
        }, true)
      )
      : Effect.fail(
        new BackendError({
          backend,
          code: "PROTOCOL",
          detail: `unknown binding axis ${JSON.stringify(response.bindingAxis)}`
        })
      ))

/**
 * An admission as its wire message.
 *
 * @since 0.1.0
 * @category encoding
 */
export const admissionToWire = (a: Admission): MessageInitShape<typeof pb.AdmitResponseSchema> => ({
  decision: decisionToWire(a.decision),
  leaseId: a.leaseId,
  leaseExpiresAt: toInt64(a.leaseExpiresAt),
  bindingAxis: a.bindingAxis,
  policyDenied: a.policyDenied
})
