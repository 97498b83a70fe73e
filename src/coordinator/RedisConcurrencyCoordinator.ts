/**
 * The fleet concurrency coordinator in Redis: each heartbeat is one run of the vendored
 * `distributedConcurrency.heartbeat` script on the policy's coordinator hash, the ThrottleKit core's
 * layout (field = node id, value = its space-separated integers), so core nodes and ours on one Redis
 * share one ceiling. `leave` is `distributedConcurrency.leave` (HDEL).
 *
 * - Time: the script's `now` is the Redis server clock by default (0: the script reads `TIME`), so
 *   every node's lease lapses by one clock; `clock: "effect"` passes Effect's `Clock` (tests).
 * - Keys: the connection's deployment prefix (`keyPrefix`), then `fleetKey(prefix, policy)`. Without a
 *   deployment prefix the key is exactly the core's.
 * - Faults: every call is bounded by the connection's timeout and fails with `ServiceUnavailable` or
 *   `BackendError`. A heartbeat is never retried here: the next one is the retry.
 *
 * @since 0.3.0
 * @internal
 */
import * as Effect from "effect/Effect"
import type { FleetGrant } from "../engine/fleetShare.js"
import { BackendError } from "../Errors.js"
import type { SharedRedis } from "../redis/RedisClient.js"
import { type ScriptClock, scriptNow } from "../redis/ScriptClock.js"
import type { Reply } from "../redis/ScriptRunner.js"
import type { Script } from "../redis/Scripts.js"
import type { ConcurrencyCoordinatorService } from "./ConcurrencyCoordinator.js"

const malformed = (reply: Reply) =>
  new BackendError({ backend: "redis", code: "REPLY", detail: `malformed heartbeat reply: ${JSON.stringify(reply)}` })

/**
 * Decodes the heartbeat script's reply `[share, lGlobal, nodes, gen]`.
 *
 * @since 0.3.0
 * @category decoding
 */
export const grantOf = (reply: Reply): Effect.Effect<FleetGrant, BackendError> => {
  if (!Array.isArray(reply) || reply.length !== 4) return Effect.fail(malformed(reply))
  const [share, lGlobal, nodes, gen] = reply as ReadonlyArray<Reply>
  return typeof share === "number" && typeof lGlobal === "number" && typeof nodes === "number" &&
      typeof gen === "number"
    ? Effect.succeed({ share, lGlobal, nodes, gen })
    : Effect.fail(malformed(reply))
}

/**
 * The coordinator over a shared connection (its scripts and runner); the connection stays its owner's.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeOn = (
  redis: SharedRedis,
  options: { readonly clock?: ScriptClock } = {}
): Effect.Effect<ConcurrencyCoordinatorService, BackendError> =>
  Effect.gen(function*() {
    const need = (role: string): Effect.Effect<Script, BackendError> => {
      const script = redis.scripts.find("distributedConcurrency", role)
      return script === undefined
        ? Effect.fail(
          new BackendError({
            backend: "redis",
            code: "CONFIG",
            detail: `no distributedConcurrency.${role} script in vendor/lua`
          })
        )
        : Effect.succeed(script)
    }
    const beat = yield* need("heartbeat")
    const leaveScript = yield* need("leave")
    const runner = redis.runner
    const now = scriptNow(options.clock)
    const keyOf = (key: string) => redis.keyPrefix + key

    const heartbeat: ConcurrencyCoordinatorService["heartbeat"] = Effect.fn("RedisConcurrencyCoordinator.heartbeat")(
      function*(key, report, rules) {
        const call = yield* runner.prepare(beat, { key: keyOf(key) }, {
          nodeId: report.nodeId,
          lLocal: report.lLocal,
          inflight: report.inflight,
          expiresAt: report.expiresAt,
          now: yield* now,
          aggregate: rules.aggregate,
          seq: report.seq,
          appliedGen: report.appliedGen,
          handoff: rules.handoff ? "1" : "0",
          allocation: rules.allocation
        })
        return yield* Effect.flatMap(runner.run(call), grantOf)
      }
    )

    const leave: ConcurrencyCoordinatorService["leave"] = Effect.fn("RedisConcurrencyCoordinator.leave")(
      function*(key, nodeId) {
        const call = yield* runner.prepare(leaveScript, { key: keyOf(key) }, { nodeId })
        yield* runner.run(call)
      }
    )

    return { store: "redis", heartbeat, leave }
  })
