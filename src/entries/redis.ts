/**
 * `throttlekit-effect/redis`: the Redis door (Lua inside a shared Redis), the shared connection, and the
 * Redis coordinator of two-tier policies. Needs the `ioredis` peer.
 *
 * @since 0.2.0
 */

/**
 * The Redis door: `RedisBackend.layer`, `layerFile`, `layerConfig`.
 *
 * @since 0.1.0
 */
export * as RedisBackend from "../layers/RedisBackend.js"

/**
 * One Redis connection to share between the Redis store and the Redis coordinator.
 *
 * @since 0.2.0
 */
export * as RedisClient from "../redis/RedisClient.js"

/**
 * The coordinator of two-tier policies on Redis, shared by a fleet of servers.
 *
 * @since 0.1.0
 */
export * as RedisCoordinator from "../coordinator/RedisCoordinator.js"

/**
 * The fleet-wide shaper: one rate per key for every process shaping on this Redis (`RedisShaper.layer`).
 *
 * @since 0.3.0
 */
export * as RedisShaper from "../layers/RedisShaper.js"

/**
 * Insurance: while Redis is unreachable, each process decides against its share of each limit
 * (`RedisBackend`'s `insurance` option).
 *
 * @since 0.3.0
 */
export * as Insurance from "../layers/Insurance.js"
