/**
 * `throttlekit-effect/service`: the Service door, gRPC to a ThrottleKit server (`throttlekit.v1`). Needs
 * the `@grpc/grpc-js` peer.
 *
 * @since 0.2.0
 */

/**
 * The Service door: `ServiceBackend.layer`, `layerConfig`.
 *
 * @since 0.1.0
 */
export * as ServiceBackend from "../layers/ServiceBackend.js"

/**
 * The admin client: `RateLimiterAdmin` over a throttlekit-effect server's admin door (`AdminBackend.layer`,
 * `layerConfig`).
 *
 * @since 0.3.0
 */
export * as AdminBackend from "../clients/AdminBackend.js"
