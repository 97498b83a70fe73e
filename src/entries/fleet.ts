/**
 * `throttlekit-effect/fleet`: the `Fleet` service (credit leases a client spends locally) and its gRPC
 * client. Needs the `@grpc/grpc-js` peer.
 *
 * @since 0.2.0
 */

/** @since 0.1.0 */
export * from "../services/Fleet.js"

/**
 * The Fleet client: `FleetBackend.layer`, `layerConfig`.
 *
 * @since 0.1.0
 */
export * as FleetBackend from "../clients/FleetBackend.js"
