import { describe, expect, it } from "@effect/vitest"
import { status as Status } from "@grpc/grpc-js"
import {
  BackendError,
  CapacityExceeded,
  InvalidArgument,
  MAX_SHOWN_BYTES,
  OperationNotSupported,
  OutcomeUnknown,
  PolicyNotFound,
  ServiceUnavailable,
  Unauthenticated
} from "../../src/Errors.js"
import {
  fromRateLimiterError,
  MAX_DETAILS_BYTES,
  parseConfiguredPolicies,
  statusError,
  toRateLimiterError
} from "../../src/grpc/status.js"

const subject = { service: "svc", policy: "api", operation: "check" } as const

describe("status mapping", () => {
  it("server side: each RateLimiter error has its status, and the message as details", () => {
    const cases = [
      [new PolicyNotFound({ policy: "x", configured: ["a", "b"] }), Status.NOT_FOUND],
      [new OperationNotSupported({ policy: "x", operation: "debit" }), Status.UNIMPLEMENTED],
      [new InvalidArgument({ argument: "cost", reason: "must be at least 1, got -1" }), Status.INVALID_ARGUMENT],
      [new ServiceUnavailable({ service: "redis", reason: "down" }), Status.UNAVAILABLE],
      [new Unauthenticated({ reason: "no secret" }), Status.UNAUTHENTICATED],
      [new BackendError({ backend: "redis", code: "SCRIPT", detail: "boom" }), Status.INTERNAL],
      [new CapacityExceeded({ policy: "x", key: "k", cost: 6, capacity: 5 }), Status.OUT_OF_RANGE]
    ] as const
    for (const [error, code] of cases) {
      const status = fromRateLimiterError(error, { listPolicies: true })
      expect([error._tag, status.code, status.details]).toEqual([error._tag, code, error.message])
    }
  })

  it("server side: a NOT_FOUND lists the configured policies only when asked, bounded, never the whole name", () => {
    const error = new PolicyNotFound({ policy: "x", configured: ["a", "b"] })
    const unlisted = fromRateLimiterError(error)
    expect(unlisted.code).toBe(Status.NOT_FOUND)
    expect(unlisted.details).toBe("unknown policy \"x\"; the configured policies are listed to trusted callers only")
    expect(parseConfiguredPolicies(unlisted.details)).toEqual([])
    expect(toRateLimiterError(unlisted, subject)).toEqual(new PolicyNotFound({ policy: "api", configured: [] }))

    // Many long names: whole names while they fit, then "…"; the details stay within MAX_DETAILS_BYTES.
    const many = Array.from({ length: 400 }, (_, i) => `policy-${i}`.padEnd(200, "x"))
    const listed = fromRateLimiterError(new PolicyNotFound({ policy: "y".repeat(5000), configured: many }), {
      listPolicies: true
    })
    expect(Buffer.byteLength(listed.details, "utf8")).toBeLessThanOrEqual(MAX_DETAILS_BYTES)
    expect(listed.details).toMatch(/, …$/)
    const names = parseConfiguredPolicies(listed.details)
    expect(names.length).toBeGreaterThan(0)
    expect(names).toEqual(many.slice(0, names.length))
    // The unknown name is shown cut to MAX_SHOWN_BYTES.
    expect(listed.details.startsWith(`unknown policy "${"y".repeat(MAX_SHOWN_BYTES - 3)}…"`)).toBe(true)
  })

  it("round trip: the client gets back the error the server mapped", () => {
    const notFound = toRateLimiterError(
      fromRateLimiterError(new PolicyNotFound({ policy: "api", configured: ["a", "b \\\"q\\\""] }), {
        listPolicies: true
      }),
      subject
    )
    expect(notFound).toEqual(new PolicyNotFound({ policy: "api", configured: ["a", "b \\\"q\\\""] }))
    const unsupported = toRateLimiterError(
      fromRateLimiterError(new OperationNotSupported({ policy: "api", operation: "check" })),
      subject
    )
    expect(unsupported).toEqual(new OperationNotSupported({ policy: "api", operation: "check" }))
    // Our server's reason survives; the operation is the caller's (a probe asks CheckMany for a check).
    const withReason = toRateLimiterError(
      fromRateLimiterError(
        new OperationNotSupported({ policy: "api", operation: "checkMany", reason: "a meter policy" })
      ),
      subject
    )
    expect(withReason).toEqual(
      new OperationNotSupported({ policy: "api", operation: "check", reason: "a meter policy" })
    )
    const invalid = toRateLimiterError(
      fromRateLimiterError(new InvalidArgument({ argument: "keys[1]", reason: "must not be empty" })),
      subject
    )
    expect(invalid).toEqual(new InvalidArgument({ argument: "keys[1]", reason: "must not be empty" }))
  })

  it("client side: transport statuses and foreign details", () => {
    const unavailable = toRateLimiterError(statusError(Status.UNAVAILABLE, "connect ECONNREFUSED"), subject)
    expect(unavailable._tag).toBe("ServiceUnavailable")
    // A missed deadline on a consuming call: the server may have applied it, or may still.
    const deadline = toRateLimiterError(statusError(Status.DEADLINE_EXCEEDED, "Deadline exceeded"), subject)
    expect(deadline).toEqual(new OutcomeUnknown({ service: "svc", operation: "check", reason: "Deadline exceeded" }))
    // On a read (peek, forecast) nothing was consumed: the service was unavailable.
    const readDeadline = toRateLimiterError(statusError(Status.DEADLINE_EXCEEDED, "Deadline exceeded"), {
      ...subject,
      operation: "peek"
    })
    expect(readDeadline).toEqual(
      new ServiceUnavailable({ service: "svc", reason: "DEADLINE_EXCEEDED: Deadline exceeded" })
    )
    const unimplemented = toRateLimiterError(
      statusError(Status.UNIMPLEMENTED, "The server does not implement"),
      subject
    )
    expect(unimplemented).toEqual(
      new OperationNotSupported({ policy: "api", operation: "check", reason: "The server does not implement" })
    )
    expect(toRateLimiterError(statusError(Status.NOT_FOUND, "gone"), subject)).toEqual(
      new PolicyNotFound({ policy: "api", configured: [] })
    )
    expect(toRateLimiterError(statusError(Status.INVALID_ARGUMENT, "bad"), subject)).toEqual(
      new InvalidArgument({ argument: "request", reason: "bad" })
    )
    expect(toRateLimiterError(statusError(Status.UNAUTHENTICATED, "who"), subject)).toEqual(
      new Unauthenticated({ reason: "who" })
    )
    expect(toRateLimiterError(statusError(Status.PERMISSION_DENIED, "no"), subject)).toEqual(
      new BackendError({ backend: "svc", code: "PERMISSION_DENIED", detail: "no" })
    )
  })

  it("reads the configured names from the reference server's NOT_FOUND text", () => {
    expect(parseConfiguredPolicies("unknown policy \"x\"; configured policies: \"api\", \"llm\"")).toEqual([
      "api",
      "llm"
    ])
    expect(parseConfiguredPolicies("unknown policy \"x\"; configured policies: (none)")).toEqual([])
    expect(parseConfiguredPolicies("no list here")).toEqual([])
  })
})
