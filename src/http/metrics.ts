/**
 * The HTTP middleware's metrics, as Effect `Metric`s (exported through whatever metrics layer the app
 * installs, e.g. OpenTelemetry). Every series is tagged with `policy`.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/**
 * Requests the limiter allowed, tagged `policy`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const allowed = Metric.counter("throttlekit_http_allowed_total", {
  description: "HTTP requests allowed by the rate limiter",
  incremental: true
})

/**
 * Requests the limiter denied (answered 429), tagged `policy`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const denied = Metric.counter("throttlekit_http_denied_total", {
  description: "HTTP requests denied by the rate limiter",
  incremental: true
})

/**
 * Decisions the backend could not make (a fault, not a denial), tagged `policy`, `mode` (`open`: the
 * request was let through; `closed`: it was answered 503) and `error` (the fault's tag).
 *
 * @since 0.1.0
 * @category metrics
 */
export const backendFaults = Metric.counter("throttlekit_http_backend_faults_total", {
  description: "HTTP rate-limit decisions that failed in the backend, by fail mode and error",
  incremental: true
})

/**
 * How long one decision took (the backend call, key and cost included), in milliseconds, tagged `policy`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const decisionLatency = Metric.histogram(
  "throttlekit_http_decision_latency_ms",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 16 }),
  "Latency of HTTP rate-limit decisions in milliseconds"
)
