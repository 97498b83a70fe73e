/**
 * `throttlekit-effect/server`: the ThrottleKit server as one layer (what `throttlekit-effect serve`
 * runs), and the two-tier wrapper with its coordinators. Needs the `@grpc/grpc-js` peer, and `ioredis`
 * for a Redis store.
 *
 * @since 0.2.0
 */

/**
 * The server as one layer: the policies, the store and the doors in, the running gRPC server out.
 *
 * @since 0.2.0
 */
export * as ThrottleKitServer from "../server/ThrottleKitServer.js"

/**
 * Two-tier policies: a local store spending credits leased from a coordinator.
 *
 * @since 0.1.0
 */
export * as TwoTier from "../server/TwoTier.js"

/**
 * The coordinator service two-tier policies lease from.
 *
 * @since 0.1.0
 */
export * as Coordinator from "../coordinator/Coordinator.js"

/**
 * The in-process coordinator (one server).
 *
 * @since 0.1.0
 */
export * as MemoryCoordinator from "../coordinator/MemoryCoordinator.js"
