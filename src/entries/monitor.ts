/**
 * `throttlekit-effect/monitor`: the `Monitor` service (a live view of a server's decisions), its
 * snapshot schemas and its gRPC client. Needs the `@grpc/grpc-js` peer.
 *
 * @since 0.2.0
 */

/** @since 0.1.0 */
export * from "../services/Monitor.js"

/**
 * The Monitor client: `MonitorBackend.layer`, `layerConfig`.
 *
 * @since 0.1.0
 */
export * as MonitorBackend from "../clients/MonitorBackend.js"
