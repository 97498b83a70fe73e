/**
 * The faults a backend can report, as tagged errors. A denial is never here: it is a `Decision`. A
 * message repeats at most `MAX_SHOWN_BYTES` of any string a caller chose (a policy name, a key).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { BindingAxis, Decision } from "./Decision.js"

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes (at a character boundary, ending with "…" when cut).
 *
 * @since 0.2.0
 * @category utils
 */
export const truncateUtf8 = (text: string, maxBytes: number): string => {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: short texts skip the byte count.
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text, "utf8") <= maxBytes) return text
  const ellipsis = "…"
  const budget = maxBytes - Buffer.byteLength(ellipsis, "utf8")
  let bytes = 0
  let end = 0
  for (const char of text) {
    const size = Buffer.byteLength(char, "utf8")
    if (bytes + size > budget) break
    bytes += size
    end += char.length
  }
  return text.slice(0, end) + ellipsis
}

/**
 * The most UTF-8 bytes of a caller's string (a policy name, a key) an error message repeats; a longer
 * one is cut, ending with "…".
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_SHOWN_BYTES = 256

/** `text` quoted for a message, cut to `MAX_SHOWN_BYTES`. */
const shown = (text: string): string => JSON.stringify(truncateUtf8(text, MAX_SHOWN_BYTES))

/**
 * The policy is not configured on this backend.
 *
 * @since 0.1.0
 * @category errors
 */
export class PolicyNotFound extends Schema.TaggedError<PolicyNotFound>()("PolicyNotFound", {
  policy: Schema.String,
  configured: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const names = this.configured.length === 0 ? "(none)" : this.configured.map(shown).join(", ")
    return `unknown policy ${shown(this.policy)}; configured policies: ${names}`
  }
}

/**
 * The operations of the `RateLimiter` service, as named in errors.
 *
 * @since 0.1.0
 * @category models
 */
export const Operation = Schema.Literal(
  "check",
  "checkMany",
  "checkAll",
  "peek",
  "forecast",
  "debit",
  "admit",
  "reserve",
  "snapshot",
  "watch",
  "reset",
  "block",
  "unblock",
  "penalize",
  "reward"
)

/**
 * @since 0.1.0
 * @category models
 */
export type Operation = typeof Operation.Type

/**
 * The policy exists but its kind (or strategy) does not support this operation.
 *
 * @since 0.1.0
 * @category errors
 */
export class OperationNotSupported extends Schema.TaggedError<OperationNotSupported>()("OperationNotSupported", {
  policy: Schema.String,
  operation: Operation,
  reason: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const suffix = this.reason === undefined ? "" : ` (${this.reason})`
    return `policy ${shown(this.policy)} does not support ${this.operation}${suffix}`
  }
}

/**
 * The backend (Redis, the ThrottleKit server) could not be reached, or did not answer in time. A
 * consuming call that fails with it was not applied, and never will be: the Redis door fences every
 * consuming script (it applies nothing once its deadline has passed), and a server built on this library
 * answers UNAVAILABLE only for calls it did not apply.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", {
  service: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `${this.service} unavailable: ${this.reason}`
  }
}

/**
 * A consuming call (a check, a debit, an admission) was sent and no answer came back in time, and nothing
 * can tell whether the remote side applied it: it may have counted, or not, or may still count later.
 * Only the Service door reports it (a gRPC DEADLINE_EXCEEDED: the client gave up on the call and cancelled
 * it, but a request that reached the server before the cancellation may have been applied, or may still
 * be). Retrying may count the call twice; not retrying may count it never.
 *
 * @since 0.2.0
 * @category errors
 */
export class OutcomeUnknown extends Schema.TaggedError<OutcomeUnknown>()("OutcomeUnknown", {
  service: Schema.String,
  operation: Operation,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.service}: the outcome of ${this.operation} is unknown (${this.reason})`
  }
}

/**
 * An argument was rejected before any state was touched: which one, and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  argument: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid ${this.argument}: ${this.reason}`
  }
}

/**
 * The caller did not present valid credentials (the Monitor and Fleet doors).
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()("Unauthenticated", {
  reason: Schema.String
}) {
  override get message(): string {
    return `unauthenticated: ${this.reason}`
  }
}

/**
 * The backend answered with a fault it does not classify further (gRPC INTERNAL, PERMISSION_DENIED, …,
 * or a Redis script error). `code` is the remote status name.
 *
 * @since 0.1.0
 * @category errors
 */
export class BackendError extends Schema.TaggedError<BackendError>()("BackendError", {
  backend: Schema.String,
  code: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `${this.backend} failed (${this.code}): ${this.detail}`
  }
}

/**
 * Raised by `RateLimiter.limit` and friends when the caller chose to treat a denial as a failure.
 * Carries the denying `Decision`, so `retryAfterMs` is at hand, and, when an admission was denied
 * (`admitted`), the axis that bound it (`"rate"`, `"concurrency"` or `"cost"`).
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  policy: Schema.String,
  key: Schema.String,
  decision: Decision,
  /** The axis that bound a denied admission; absent for a check or a debit (`@since 0.3.0`). */
  bindingAxis: Schema.optional(BindingAxis)
}) {
  override get message(): string {
    const axis = this.bindingAxis === undefined || this.bindingAxis === "" ? "" : ` (bound by ${this.bindingAxis})`
    return `rate limited on ${shown(this.policy)} for ${
      shown(this.key)
    }${axis}: retry after ${this.decision.retryAfterMs} ms`
  }
}

/**
 * A cost above what the policy can ever admit: more than its capacity (a GCRA's burst, a token bucket's
 * capacity, a window's or a quota's limit, a fair escrow's window budget, a unified admitter's rate
 * axis). No wait would make it fit, so it is not a denial with a retry hint but this fault, raised before
 * any state is touched. `key` is the key of the call (the first key of a `checkMany`).
 *
 * @since 0.3.0
 * @category errors
 */
export class CapacityExceeded extends Schema.TaggedError<CapacityExceeded>()("CapacityExceeded", {
  policy: Schema.String,
  key: Schema.String,
  cost: Schema.Number,
  capacity: Schema.Number
}) {
  override get message(): string {
    return `cost ${this.cost} exceeds the capacity ${this.capacity} of policy ${shown(this.policy)} (for ${
      shown(this.key)
    }): it can never be admitted`
  }
}

/**
 * Every fault a `RateLimiter` method can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type RateLimiterError =
  | PolicyNotFound
  | OperationNotSupported
  | ServiceUnavailable
  | OutcomeUnknown
  | InvalidArgument
  | Unauthenticated
  | BackendError
  | CapacityExceeded
