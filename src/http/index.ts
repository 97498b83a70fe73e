/**
 * The HTTP integration for `@effect/platform`: a rate-limit middleware for routers and apps
 * (`HttpRateLimit`), an `HttpApiMiddleware` for `HttpApi` endpoints (`HttpRateLimitApi`), and the pieces
 * they are made of (headers, keying, metrics).
 *
 * @since 0.1.0
 */

/**
 * The router / app middleware: `HttpRateLimit.make(options)`.
 *
 * @since 0.1.0
 */
export * as HttpRateLimit from "./middleware.js"

/**
 * The `HttpApi` middleware tag and its layer.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitApi from "./api.js"

/**
 * Options, outcomes and the shared per-request decision.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitDecision from "./decision.js"

/**
 * `RateLimit-Policy` / `RateLimit` and `X-RateLimit-*` headers.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitHeaders from "./headers.js"

/**
 * Client addresses, trusted proxies and key functions.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitKeying from "./keying.js"

/**
 * The middleware's `Metric`s.
 *
 * @since 0.1.0
 */
export * as HttpRateLimitMetrics from "./metrics.js"
