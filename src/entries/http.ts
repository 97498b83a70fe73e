/**
 * `throttlekit-effect/http`: rate limits for `@effect/platform` HTTP apps — a router / app middleware
 * (`HttpRateLimit`), an `HttpApiMiddleware` (`HttpRateLimitApi`), and their parts.
 *
 * @since 0.2.0
 */

/**
 * The router / app middleware: `HttpRateLimit.make(options)`.
 *
 * @since 0.1.0
 */
export * as HttpRateLimit from "../http/middleware.js"

/**
 * The `HttpApi` middleware tag and its layer.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitApi from "../http/api.js"

/**
 * Options, outcomes and the shared per-request decision.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitDecision from "../http/decision.js"

/**
 * `RateLimit-Policy` / `RateLimit` and `X-RateLimit-*` headers.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitHeaders from "../http/headers.js"

/**
 * Client addresses, trusted proxies and key functions.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitKeying from "../http/keying.js"

/**
 * The middleware's `Metric`s.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitMetrics from "../http/metrics.js"

/**
 * Outbound limits for an `HttpClient`: a policy checked before each request, and pauses learned from
 * `429` / `Retry-After` / `RateLimit` / `X-RateLimit-*` responses.
 *
 * @since 0.3.0
 */
export * as HttpClientLimiter from "../http/client.js"
