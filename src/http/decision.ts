/**
 * The per-request decision shared by the router middleware and the `HttpApi` middleware: resolve the key
 * and the cost, ask the `RateLimiter` (a check, or a scoped admission), time it, count it, trace it, and
 * say what the response should be.
 *
 * @since 0.1.0
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type { Decision } from "../Decision.js"
import {
  type CapacityExceeded,
  InvalidArgument,
  type OperationNotSupported,
  type PolicyNotFound,
  type RateLimiterError
} from "../Errors.js"
import type { Policy } from "../Policy.js"
import { type AdmitOptions, RateLimiter } from "../services/RateLimiter.js"
import * as Validate from "../Validate.js"
import { type HeaderStyle, policyWindowSeconds, rateLimitHeaders } from "./headers.js"
import { clientAddress, type ForwardedHeader, type KeyFunction, TrustedProxies } from "./keying.js"
import * as Metrics from "./metrics.js"

/**
 * What to do when the backend cannot decide (any `RateLimiterError` but `CapacityExceeded`: unreachable
 * Redis or server, an unknown policy, a rejected key or cost): `"open"` lets the request through (logged
 * and counted), `"closed"` answers 503. A request whose cost is above the policy's capacity is decided:
 * it is never served (`TooCostly`), whatever the fail mode.
 *
 * @since 0.1.0
 * @category models
 */
export type FailMode = "open" | "closed"

/**
 * The cost of a request: a fixed number, or a function of the request (e.g. by route or body size).
 *
 * @since 0.1.0
 * @category models
 */
export type CostFunction<E = never, R = never> = (
  request: HttpServerRequest.HttpServerRequest
) => number | Effect.Effect<number, E, R>

/**
 * Admission options of a concurrency (or unified rate × concurrency) policy.
 *
 * @since 0.1.0
 * @category models
 */
export type AdmissionOptions = Pick<AdmitOptions, "hold" | "value" | "keepAlive" | "interruptOnReclaim">

/**
 * Options of the rate-limit middleware.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimitOptions<E = never, R = never> {
  /**
   * The policy to apply: its name, or the `Policy` itself (the `RateLimit-Policy` window `w` is then
   * derived from it; with a bare name, give `window` or `w` is left out).
   */
  readonly policy: string | Policy
  /** The window reported in `RateLimit-Policy` (`w`), overriding the one derived from the policy. */
  readonly window?: Duration.DurationInput | undefined
  /** Header style: `"ietf"` (default), `"legacy"` (`X-RateLimit-*`) or `"none"`. */
  readonly headers?: HeaderStyle | undefined
  /** The key of a request (default: the client address). Gets the client address to fall back on. */
  readonly key?: KeyFunction<E, R> | undefined
  /**
   * Proxies whose forwarding header is believed: addresses, CIDR ranges, `"loopback"`, `"private"`.
   * Default: none, so forwarding headers are ignored and the peer address is the client.
   */
  readonly trustedProxies?: ReadonlyArray<string> | undefined
  /** The forwarding header the trusted proxies write (default `"x-forwarded-for"`). */
  readonly forwardedHeader?: ForwardedHeader | undefined
  /** Cost of a request: a number or a function of the request (default 1). */
  readonly cost?: number | CostFunction<E, R> | undefined
  /**
   * Admit into a concurrency policy instead of checking a rate: the slot is held while the handler runs
   * and released when it ends, fails or is interrupted (a client disconnect). `true` or admission options.
   */
  readonly admit?: boolean | AdmissionOptions | undefined
  /** Fail open (default) or closed when the backend cannot decide. */
  readonly failMode?: FailMode | undefined
}

/**
 * The outcome of one request's decision.
 * - `Allowed`: go on, stamping `headers` on the response.
 * - `Denied`: answer 429 with `headers` (which include `Retry-After`).
 * - `TooCostly`: the request costs more than the policy can ever admit: answer 413, without
 *   `Retry-After` (no wait would help; a 429 would invite retries that never succeed). `@since 0.3.0`
 * - `FailedOpen`: the backend failed and the request goes through without rate-limit headers.
 * - `FailedClosed`: the backend failed and the request is answered 503.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome =
  | { readonly _tag: "Allowed"; readonly decision: Decision; readonly headers: Record<string, string> }
  | { readonly _tag: "Denied"; readonly decision: Decision; readonly headers: Record<string, string> }
  | { readonly _tag: "TooCostly"; readonly error: CapacityExceeded }
  | { readonly _tag: "FailedOpen"; readonly error: RateLimiterError }
  | { readonly _tag: "FailedClosed"; readonly error: RateLimiterError }

/**
 * A compiled rate-limit rule: options validated, the `RateLimiter` captured.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpLimiter<E = never, R = never> {
  /** The policy name. */
  readonly policy: string
  /** The fail mode in force. */
  readonly failMode: FailMode
  /** True when the limiter admits into a concurrency policy (a slot held around the handler). */
  readonly admits: boolean
  /**
   * Decides one request. In admission mode the slot is held in the current `Scope` and released when the
   * scope closes (as dropped when it closes by failure or interruption).
   */
  readonly decide: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<Outcome, E, R | Scope.Scope>
}

/** A window given as a duration, in whole seconds (at least 1). */
const windowSecondsOf = (window: Duration.DurationInput): Effect.Effect<number, InvalidArgument> => {
  const decoded = Duration.decodeUnknown(window)
  if (decoded._tag === "None" || !Duration.isFinite(decoded.value) || Duration.toMillis(decoded.value) <= 0) {
    return Effect.fail(new InvalidArgument({ argument: "window", reason: "must be a finite, positive duration" }))
  }
  return Effect.succeed(Math.max(1, Math.ceil(Duration.toMillis(decoded.value) / 1000)))
}

/**
 * Validates `options`, captures the `RateLimiter` and resolves the policy. Fails with `InvalidArgument`
 * for an empty policy name, a bad fixed cost, a bad window or an unparsable trusted-proxy entry, and
 * with `PolicyNotFound` / `OperationNotSupported` when the door knows its policies (Memory, Redis) and
 * this one is unknown or cannot be checked (or admitted into). On the Service door the server answers
 * that at the first request, which is logged once as an error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const compile = <E = never, R = never>(
  options: RateLimitOptions<E, R>
): Effect.Effect<HttpLimiter<E, R>, InvalidArgument | PolicyNotFound | OperationNotSupported, RateLimiter> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const policy = typeof options.policy === "string" ? options.policy : options.policy.name
    if (policy === "") return yield* new InvalidArgument({ argument: "policy", reason: "must not be empty" })
    const windowSeconds = options.window !== undefined
      ? yield* windowSecondsOf(options.window)
      : typeof options.policy === "string"
      ? undefined
      : policyWindowSeconds(options.policy)
    const trusted = yield* TrustedProxies.make(options.trustedProxies ?? [])
    const forwardedHeader = options.forwardedHeader ?? "x-forwarded-for"
    const style = options.headers ?? "ietf"
    const failMode = options.failMode ?? "open"
    const fixedCost = typeof options.cost === "number" ? yield* Validate.cost(options.cost) : undefined
    const costOf = typeof options.cost === "function" ? options.cost : undefined
    const admission: AdmissionOptions | undefined = options.admit === true
      ? {}
      : options.admit === false || options.admit === undefined
      ? undefined
      : options.admit

    // The policy is resolved once, here: an unknown policy or the wrong kind is a startup error, not a
    // fault on every request. Only a remote door (the Service door) cannot tell before its first call.
    const resolvedHere = yield* limiter.resolve(policy, admission === undefined ? "check" : "admit")
    let policyFaultLogged = resolvedHere

    const allowedCounter = Metrics.allowed.pipe(Metric.tagged("policy", policy))
    const deniedCounter = Metrics.denied.pipe(Metric.tagged("policy", policy))
    const latency = Metrics.decisionLatency.pipe(Metric.tagged("policy", policy))
    const faults = Metrics.backendFaults.pipe(Metric.tagged("policy", policy), Metric.tagged("mode", failMode))

    const resolveCost = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<number, E, R> => {
      if (costOf === undefined) return Effect.succeed(fixedCost ?? 1)
      const cost = costOf(request)
      return typeof cost === "number" ? Effect.succeed(cost) : cost
    }

    const ask = (key: string, cost: number): Effect.Effect<Decision, RateLimiterError, Scope.Scope> =>
      admission === undefined
        ? limiter.check(policy, key, cost)
        : Effect.map(limiter.admit(policy, key, { ...admission, cost }), (admitted) => admitted.decision)

    const onDecision = (decision: Decision, now: number): Effect.Effect<Outcome> => {
      const headers = rateLimitHeaders(decision, { style, policy, windowSeconds, now })
      return decision.allowed
        ? Effect.as(Metric.increment(allowedCounter), { _tag: "Allowed", decision, headers } as const)
        : Effect.as(Metric.increment(deniedCounter), { _tag: "Denied", decision, headers } as const)
    }

    const onFault = (error: RateLimiterError): Effect.Effect<Outcome> => {
      if (error._tag === "CapacityExceeded") {
        return Effect.as(Metric.increment(deniedCounter), { _tag: "TooCostly", error } as const)
      }
      const outcome: Outcome = failMode === "open" ? { _tag: "FailedOpen", error } : { _tag: "FailedClosed", error }
      const consequence = failMode === "open" ? "failing open" : "failing closed (503)"
      const counted = Metric.update(Metric.tagged(faults, "error", error._tag), 1)
      const annotate = Effect.annotateLogs({ policy, error: error._tag, backend: limiter.backend })
      if (error._tag === "PolicyNotFound" || error._tag === "OperationNotSupported") {
        // A remote door learns this at its first call: say it once, loudly; every request is still counted.
        if (policyFaultLogged) return Effect.as(counted, outcome)
        policyFaultLogged = true
        return counted.pipe(
          Effect.zipRight(
            Effect.logError(
              `the rate-limit policy cannot be served by ${limiter.backend}: ${error.message}; every request ` +
                `on this middleware is ${consequence} until the server serves it (logged once)`
            ).pipe(annotate)
          ),
          Effect.as(outcome)
        )
      }
      return counted.pipe(
        Effect.zipRight(
          Effect.logWarning(`rate limiter could not decide; ${consequence}: ${error.message}`).pipe(annotate)
        ),
        Effect.as(outcome)
      )
    }

    const decide = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Outcome, E, R | Scope.Scope> =>
      Effect.gen(function*() {
        const address = clientAddress(request, trusted, forwardedHeader)
        const key = options.key === undefined ? address : yield* options.key(request, address)
        const cost = yield* resolveCost(request)
        yield* Effect.annotateCurrentSpan({ "throttlekit.cost": cost })
        const [elapsed, result] = yield* Effect.timed(Effect.either(ask(key, cost)))
        yield* Metric.update(latency, Duration.toMillis(elapsed))
        if (Either.isLeft(result)) {
          yield* Effect.annotateCurrentSpan({
            "throttlekit.outcome": result.left._tag === "CapacityExceeded" ? "too-costly" : `failed-${failMode}`
          })
          return yield* onFault(result.left)
        }
        const decision = result.right
        yield* Effect.annotateCurrentSpan({
          "throttlekit.outcome": decision.allowed ? "allowed" : "denied",
          "throttlekit.remaining": decision.remaining
        })
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        return yield* onDecision(decision, now)
      }).pipe(
        Effect.withSpan("throttlekit.http.decide", {
          attributes: {
            "throttlekit.policy": policy,
            "throttlekit.mode": admission === undefined ? "check" : "admit",
            "http.request.method": request.method
          }
        })
      )

    return { policy, failMode, admits: admission !== undefined, decide }
  })
