/**
 * gRPC statuses as typed values, and the two-way mapping between them and the `RateLimiter` errors:
 * the server turns an error into a status, the client turns a status back into the same error.
 *
 * @since 0.1.0
 */
import { status as Status } from "@grpc/grpc-js"
import * as Schema from "effect/Schema"
import {
  BackendError,
  InvalidArgument,
  MAX_SHOWN_BYTES,
  type Operation,
  OperationNotSupported,
  OutcomeUnknown,
  PolicyNotFound,
  type RateLimiterError,
  ServiceUnavailable,
  truncateUtf8,
  Unauthenticated
} from "../Errors.js"

/**
 * A non-OK gRPC status: its numeric code and its details text.
 *
 * @since 0.1.0
 * @category errors
 */
export class GrpcStatusError extends Schema.TaggedError<GrpcStatusError>()("GrpcStatusError", {
  code: Schema.Number,
  details: Schema.String
}) {
  /** The status name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return statusName(this.code)
  }

  override get message(): string {
    return `${this.codeName}: ${this.details}`
  }
}

/**
 * The name of a status code ("NOT_FOUND"), or "CODE_<n>" for a number outside the known set.
 *
 * @since 0.1.0
 * @category utils
 */
export const statusName = (code: number): string => Status[code] ?? `CODE_${code}`

/**
 * The most UTF-8 bytes of details a server sends with a status. The details travel as a percent-encoded
 * header (`grpc-message`, up to 3 bytes per byte); clients cap the metadata they accept (8 KiB by default
 * in grpc-js and the Python client, which fail the call otherwise), so the details stay far below that.
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_DETAILS_BYTES = 1024

/**
 * Builds a `GrpcStatusError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const statusError = (code: Status, details: string): GrpcStatusError => new GrpcStatusError({ code, details })

/**
 * How the server words an error for one caller.
 *
 * @since 0.2.0
 * @category server
 */
export interface StatusOptions {
  /**
   * Whether a NOT_FOUND lists the configured policy names (default false: a caller that may not see the
   * policies learns only that the name it sent is not one).
   */
  readonly listPolicies?: boolean
}

/**
 * The NOT_FOUND details for an unknown policy, in the reference server's form
 * (`unknown policy "x"; configured policies: "a", "b"`, or `(none)`) when `listPolicies`, the names cut
 * to fit `MAX_DETAILS_BYTES` (whole names only, then `…`); without the list otherwise. The unknown name
 * is shown cut to `MAX_SHOWN_BYTES`.
 *
 * @since 0.2.0
 * @category server
 */
export const policyNotFoundDetails = (error: PolicyNotFound, listPolicies: boolean): string => {
  const head = `unknown policy ${JSON.stringify(truncateUtf8(error.policy, MAX_SHOWN_BYTES))}`
  if (!listPolicies) return `${head}; the configured policies are listed to trusted callers only`
  if (error.configured.length === 0) return `${head}; configured policies: (none)`
  // Room for the head, the marker and a final ", …".
  let budget = MAX_DETAILS_BYTES - Buffer.byteLength(head, "utf8") - 64
  const names: Array<string> = []
  for (const name of error.configured) {
    const quoted = JSON.stringify(name)
    budget -= Buffer.byteLength(quoted, "utf8") + 2
    if (budget < 0) {
      names.push("…")
      break
    }
    names.push(quoted)
  }
  return `${head}; configured policies: ${names.join(", ")}`
}

/**
 * The status the server answers for a `RateLimiter` error. `InvalidArgument` becomes INVALID_ARGUMENT:
 * the reference server silently coerces bad costs to 1 instead, which hides caller bugs.
 * `CapacityExceeded` becomes OUT_OF_RANGE (our server's front never raises it). A NOT_FOUND
 * lists the configured policies only with `listPolicies` (see `policyNotFoundDetails`).
 *
 * @since 0.1.0
 * @category server
 */
export const fromRateLimiterError = (error: RateLimiterError, options: StatusOptions = {}): GrpcStatusError => {
  switch (error._tag) {
    case "PolicyNotFound":
      return statusError(Status.NOT_FOUND, policyNotFoundDetails(error, options.listPolicies === true))
    case "OperationNotSupported":
      return statusError(Status.UNIMPLEMENTED, error.message)
    case "InvalidArgument":
      return statusError(Status.INVALID_ARGUMENT, error.message)
    case "ServiceUnavailable":
      return statusError(Status.UNAVAILABLE, error.message)
    case "OutcomeUnknown":
      // Only a client of another server reports it; a store behind this server never does.
      return statusError(Status.UNKNOWN, error.message)
    case "Unauthenticated":
      return statusError(Status.UNAUTHENTICATED, error.message)
    case "BackendError":
      return statusError(Status.INTERNAL, error.message)
    case "CapacityExceeded":
      // Our server's front answers such a cost with the contract's denial instead (its
      // `overCapacity: "deny"`); a front built to raise it gets OUT_OF_RANGE, the cost being past what
      // the policy can ever admit, which no retry fixes.
      return statusError(Status.OUT_OF_RANGE, error.message)
  }
}

/**
 * Reads the configured policy names out of a NOT_FOUND details text of the form
 * `unknown policy "x"; configured policies: "a", "b"` (or `(none)`). Empty when the text has no list.
 *
 * @since 0.1.0
 * @category client
 */
export const parseConfiguredPolicies = (details: string): ReadonlyArray<string> => {
  const marker = "configured policies: "
  const at = details.indexOf(marker)
  if (at < 0) return []
  const names: Array<string> = []
  for (const match of details.slice(at + marker.length).matchAll(/"(?:[^"\\]|\\.)*"/g)) {
    try {
      const name: unknown = JSON.parse(match[0])
      if (typeof name === "string") names.push(name)
    } catch {
      // A quoted fragment that is not valid JSON is not a name we can report; skip it.
    }
  }
  return names
}

/** `policy "x" does not support <op>`, with our server's ` (<reason>)` after it when there is one. */
const standardUnsupported = /^policy ".*" does not support \w+(?: \((.*)\))?$/s
const invalidArgumentDetails = /^invalid ([^:]+): (.*)$/s

/**
 * Whether a status says the named policy does not serve the operation (UNIMPLEMENTED with the standard
 * `policy "x" does not support <op>` text), rather than that the server lacks the RPC altogether
 * (grpc's own UNIMPLEMENTED, "The server does not implement the method ...").
 *
 * @since 0.2.0
 * @category client
 */
export const isUnsupportedByPolicy = (error: GrpcStatusError): boolean =>
  error.code === Status.UNIMPLEMENTED && standardUnsupported.test(error.details)

/**
 * What a client call was about, so a status can be turned back into a precise error.
 *
 * @since 0.1.0
 * @category client
 */
export interface CallSubject {
  /** The remote service, named in `ServiceUnavailable` and `BackendError`. */
  readonly service: string
  /** The policy the call named ("" for lease calls). */
  readonly policy: string
  /** The operation, named in `OperationNotSupported`. */
  readonly operation: Operation
}

/** The operations that consume (count, spend, hold) when the server applies them. */
const consuming: ReadonlySet<Operation> = new Set<Operation>([
  "check",
  "checkMany",
  "debit",
  "admit",
  "reserve",
  // The admin writes (a reset is idempotent, as is an unblock: retrying either is safe).
  "penalize",
  "reward",
  "block"
])

/**
 * The `RateLimiter` error a client reports for a failed call. NOT_FOUND, UNIMPLEMENTED, UNAVAILABLE,
 * DEADLINE_EXCEEDED (`OutcomeUnknown` for a consuming call), INVALID_ARGUMENT and UNAUTHENTICATED have their own errors; any other status is a
 * `BackendError` naming it.
 *
 * @since 0.1.0
 * @category client
 */
export const toRateLimiterError = (error: GrpcStatusError, subject: CallSubject): RateLimiterError => {
  switch (error.code) {
    case Status.NOT_FOUND:
      return new PolicyNotFound({ policy: subject.policy, configured: parseConfiguredPolicies(error.details) })
    case Status.UNIMPLEMENTED: {
      // The standard text names the server's operation (a probe's CheckMany for a check): keep only its
      // reason, and name the caller's operation.
      const standard = standardUnsupported.exec(error.details)
      const reason = standard === null ? error.details : standard[1]
      return new OperationNotSupported({
        policy: subject.policy,
        operation: subject.operation,
        ...(reason === undefined ? {} : { reason })
      })
    }
    case Status.DEADLINE_EXCEEDED:
      // A consuming call may have been applied, or may still be: the server's deadline runs from when
      // the request reached it.
      return consuming.has(subject.operation)
        ? new OutcomeUnknown({ service: subject.service, operation: subject.operation, reason: error.details })
        : new ServiceUnavailable({ service: subject.service, reason: `${error.codeName}: ${error.details}` })
    case Status.UNAVAILABLE:
      return new ServiceUnavailable({ service: subject.service, reason: `${error.codeName}: ${error.details}` })
    case Status.INVALID_ARGUMENT: {
      const parsed = invalidArgumentDetails.exec(error.details)
      return parsed === null
        ? new InvalidArgument({ argument: "request", reason: error.details })
        : new InvalidArgument({ argument: parsed[1]!, reason: parsed[2]! })
    }
    case Status.UNAUTHENTICATED:
      return new Unauthenticated({ reason: error.details })
    default:
      return new BackendError({ backend: subject.service, code: error.codeName, detail: error.details })
  }
}
