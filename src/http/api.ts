/**
 * Rate limiting for `HttpApi` apps, per endpoint or group, as an `HttpApiMiddleware`. A denial fails
 * the endpoint with `TooManyRequests` (status 429, `Retry-After` and rate-limit headers added); a
 * fail-closed backend fault with `RateLimiterUnavailable` (503). Both are declared on the middleware, so
 * they appear in the API's schema and clients decode them. A request costing more than the policy can
 * ever admit fails with `CostExceedsCapacity` (413, no `Retry-After`), whatever the fail mode.
 *
 * ```ts
 * const Api = HttpApi.make("api").add(
 *   HttpApiGroup.make("items").add(HttpApiEndpoint.get("list", "/items")).middleware(HttpRateLimitApi.RateLimit)
 * )
 * const RateLimitLive = HttpRateLimitApi.layer({ policy: "api" }) // Layer<RateLimit, InvalidArgument, RateLimiter>
 * ```
 *
 * To limit a whole `HttpApi` with a single rule, the plain middleware works too:
 * `HttpApiBuilder.middleware(HttpRateLimit.make(options))`. For several rules (a different policy per
 * group), declare more tags with the same failure schema (`failure: HttpRateLimitApi.RateLimitFailure`) and
 * provide each with `Layer.effect(Tag, HttpRateLimitApi.makeMiddleware(options))`.
 *
 * In admission mode the slot is held in the request's scope: from before the handler until the
 * response has been written, and released (as dropped) when the client disconnects.
 *
 * @since 0.1.0
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { InvalidArgument, OperationNotSupported, PolicyNotFound } from "../Errors.js"
import type { RateLimiter } from "../services/RateLimiter.js"
import { compile, type RateLimitOptions } from "./decision.js"
import { mergeRateLimitHeaders, retryAfterSeconds } from "./headers.js"

/**
 * The endpoint failure of a denied request: status 429. `retryAfter` is in seconds (as `Retry-After`).
 *
 * @since 0.1.0
 * @category errors
 */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  policy: Schema.String,
  retryAfter: Schema.Number
}, HttpApiSchema.annotations({ status: 429 })) {}

/**
 * The endpoint failure of a request that costs more than the policy can ever admit (`CapacityExceeded`):
 * status 413, without `Retry-After`, since no wait admits it.
 *
 * @since 0.3.0
 * @category errors
 */
export class CostExceedsCapacity extends Schema.TaggedError<CostExceedsCapacity>()("CostExceedsCapacity", {
  policy: Schema.String,
  cost: Schema.Number,
  capacity: Schema.Number
}, HttpApiSchema.annotations({ status: 413 })) {}

/**
 * The endpoint failure when the limiter fails closed and the backend cannot decide: status 503.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimiterUnavailable extends Schema.TaggedError<RateLimiterUnavailable>()("RateLimiterUnavailable", {
  policy: Schema.String
}, HttpApiSchema.annotations({ status: 503 })) {}

/**
 * The failure schema of every rate-limit `HttpApiMiddleware` tag.
 *
 * @since 0.1.0
 * @category errors
 */
export const RateLimitFailure = Schema.Union(TooManyRequests, RateLimiterUnavailable, CostExceedsCapacity)

/**
 * The service a rate-limit `HttpApiMiddleware` tag holds.
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimitApiMiddleware = HttpApiMiddleware.HttpApiMiddleware<
  void,
  TooManyRequests | RateLimiterUnavailable | CostExceedsCapacity
>

/**
 * A ready-made rate-limit middleware tag: add it to endpoints or groups with `.middleware(RateLimit)`
 * and provide it with `layer(options)`.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimit extends HttpApiMiddleware.Tag<RateLimit>()("throttlekit-effect/http/RateLimit", {
  failure: RateLimitFailure
}) {}

/** Stamps `headers` on whatever response this request ends with (including an error response). */
const stampHeaders = (headers: Record<string, string>): Effect.Effect<void> =>
  HttpApp.appendPreResponseHandler((_request, response) =>
    Effect.succeed(HttpServerResponse.setHeaders(response, mergeRateLimitHeaders(response.headers, headers)))
  )

/**
 * Builds the implementation of a rate-limit middleware tag. Fails with `InvalidArgument` on bad options
 * and with `PolicyNotFound` / `OperationNotSupported` when the door knows the policy is not servable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMiddleware = (
  options: RateLimitOptions
): Effect.Effect<RateLimitApiMiddleware, InvalidArgument | PolicyNotFound | OperationNotSupported, RateLimiter> =>
  Effect.map(
    compile(options),
    (limiter) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        Effect.flatMap(
          limiter.decide(request),
          (outcome): Effect.Effect<void, TooManyRequests | RateLimiterUnavailable | CostExceedsCapacity> => {
            switch (outcome._tag) {
              case "Allowed":
                return stampHeaders(outcome.headers)
              case "Denied":
                return Effect.zipRight(
                  stampHeaders(outcome.headers),
                  Effect.fail(
                    new TooManyRequests({ policy: limiter.policy, retryAfter: retryAfterSeconds(outcome.decision) })
                  )
                )
              case "TooCostly":
                return Effect.fail(
                  new CostExceedsCapacity({
                    policy: limiter.policy,
                    cost: outcome.error.cost,
                    capacity: outcome.error.capacity
                  })
                )
              case "FailedOpen":
                return Effect.void
              case "FailedClosed":
                return Effect.fail(new RateLimiterUnavailable({ policy: limiter.policy }))
            }
          }
        ))
  )

/**
 * Provides the ready-made `RateLimit` tag.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: RateLimitOptions
): Layer.Layer<RateLimit, InvalidArgument | PolicyNotFound | OperationNotSupported, RateLimiter> =>
  Layer.effect(RateLimit, makeMiddleware(options))
