/**
 * The rate-limit middleware for `@effect/platform` HTTP apps (an `HttpRouter`, any `HttpApp`, or a whole
 * `HttpApi` through `HttpApiBuilder.middleware`). Per request it checks a policy (or admits into a
 * concurrency policy around the handler), answers 429 with `Retry-After` on a denial (413 without it
 * for a cost above the policy's capacity, which no wait admits), stamps the
 * rate-limit headers on allowed responses, and fails open or closed when the backend cannot decide.
 *
 * ```ts
 * const limited = yield* HttpRateLimit.make({ policy: "api", trustedProxies: ["loopback"] })
 * HttpServer.serve(router.pipe(limited))                         // a router or app
 * HttpRouter.post("/expensive", limited(handler))                 // one route
 * HttpApiBuilder.middleware(HttpRateLimit.make({ policy: "api" })) // a whole HttpApi (a Layer)
 * ```
 *
 * @since 0.1.0
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import type { Decision } from "../Decision.js"
import type { InvalidArgument, OperationNotSupported, PolicyNotFound } from "../Errors.js"
import type { RateLimiter } from "../services/RateLimiter.js"
import { compile, type HttpLimiter, type RateLimitOptions } from "./decision.js"
import { mergeRateLimitHeaders, retryAfterSeconds } from "./headers.js"

/**
 * A compiled rate-limit middleware: wraps an `HttpApp` (a router, a route handler, a whole app). The key
 * and cost functions' errors and requirements (`EK`, `RK`) join the app's.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimitMiddleware<EK = never, RK = never> {
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E | EK, R | RK>
}

/**
 * The body of a 429: `{ "error": "rate_limited", "policy", "retryAfter" }` (seconds).
 *
 * @since 0.1.0
 * @category responses
 */
export const tooManyRequests = (policy: string, decision: Decision, headers: Record<string, string>) =>
  HttpServerResponse.unsafeJson(
    { error: "rate_limited", policy, retryAfter: retryAfterSeconds(decision) },
    { status: 429, headers }
  )

/**
 * The body of a 413 for a request that costs more than the policy can ever admit:
 * `{ "error": "cost_exceeds_capacity", "policy", "cost", "capacity" }`. No `Retry-After`: no wait helps.
 *
 * @since 0.3.0
 * @category responses
 */
export const costExceedsCapacity = (policy: string, cost: number, capacity: number) =>
  HttpServerResponse.unsafeJson({ error: "cost_exceeds_capacity", policy, cost, capacity }, { status: 413 })

/**
 * The body of a fail-closed 503: `{ "error": "rate_limiter_unavailable", "policy" }`.
 *
 * @since 0.1.0
 * @category responses
 */
export const limiterUnavailable = (policy: string) =>
  HttpServerResponse.unsafeJson({ error: "rate_limiter_unavailable", policy }, { status: 503 })

/**
 * Builds the middleware from a compiled limiter. The admission scope (when the limiter admits) is opened
 * around the decision and closed with the handler's exit, so the slot is held while the handler runs and
 * released when it ends; in admission mode the handler is made interruptible, so a client disconnect
 * (which @effect/platform-node turns into an interruption) releases the slot at once. A streamed body is
 * sent after the handler returned, outside the slot.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromLimiter = <EK, RK>(limiter: HttpLimiter<EK, RK>): RateLimitMiddleware<EK, RK> =>
  HttpMiddleware.make(<E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E | EK, R | RK> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.acquireUseRelease(
        Scope.make(),
        (scope) =>
          Effect.flatMap(Scope.extend(limiter.decide(request), scope), (outcome) => {
            switch (outcome._tag) {
              case "Allowed":
                return Effect.zipRight(
                  HttpApp.appendPreResponseHandler((_request, response) =>
                    Effect.succeed(
                      HttpServerResponse.setHeaders(response, mergeRateLimitHeaders(response.headers, outcome.headers))
                    )
                  ),
                  limiter.admits ? Effect.interruptible(app) : app
                )
              case "Denied":
                return Effect.succeed(tooManyRequests(limiter.policy, outcome.decision, outcome.headers))
              case "TooCostly":
                return Effect.succeed(
                  costExceedsCapacity(limiter.policy, outcome.error.cost, outcome.error.capacity)
                )
              case "FailedOpen":
                return limiter.admits ? Effect.interruptible(app) : app
              case "FailedClosed":
                return Effect.succeed(limiterUnavailable(limiter.policy))
            }
          }),
        (scope, exit) => Scope.close(scope, exit)
      ))
  )

/**
 * Validates `options`, captures the `RateLimiter`, resolves the policy and returns the middleware. Fails
 * with `InvalidArgument` on bad options (empty policy name, bad fixed cost or window, bad proxy entry) and
 * with `PolicyNotFound` / `OperationNotSupported` when the door knows the policy is not servable (see
 * `compile`).
 *
 * @example
 * ```ts
 * import * as HttpRouter from "@effect/platform/HttpRouter"
 * import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
 * import { Effect } from "effect"
 * import { HttpRateLimit, HttpRateLimitKeying } from "throttlekit-effect/http"
 *
 * // Needs a `RateLimiter` (any door); a denied request gets a 429 with `RateLimit` / `Retry-After` headers.
 * export const app = Effect.gen(function*() {
 *   const limited = yield* HttpRateLimit.make({
 *     policy: "api",
 *     key: HttpRateLimitKeying.byHeader("x-api-key"), // default: the peer address
 *     trustedProxies: ["loopback"], // X-Forwarded-For believed only from these
 *     cost: (request) => request.url.startsWith("/export") ? 5 : 1,
 *     failMode: "open" // or "closed": 503 when the backend is down
 *   })
 *   const router = HttpRouter.empty.pipe(HttpRouter.get("/", HttpServerResponse.text("hello")))
 *   return limited(router) // or { admit: true } to hold a concurrency slot while the handler runs
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <EK = never, RK = never>(
  options: RateLimitOptions<EK, RK>
): Effect.Effect<RateLimitMiddleware<EK, RK>, InvalidArgument | PolicyNotFound | OperationNotSupported, RateLimiter> =>
  Effect.map(compile(options), fromLimiter)
