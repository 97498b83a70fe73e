/**
 * The fleet concurrency coordinator: where the nodes of a `distributedConcurrency` policy report their
 * local ceilings and in-flight counts, and learn their share of the one global ceiling (see
 * `engine/fleetShare.ts` for the arithmetic). Each node heartbeats its own report; nothing here runs on
 * the admission path.
 *
 * Two stores: Redis (`RedisConcurrencyCoordinator`: the ThrottleKit core's wire, so core nodes and ours
 * share one ceiling) and this module's in-process one (`makeMemory`: every node of the fleet in one
 * process; tests and single-process embedding).
 *
 * @since 0.3.0
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import {
  applyHeartbeat,
  type FleetGrant,
  type FleetNode,
  type FleetReport,
  type FleetRules
} from "../engine/fleetShare.js"
import type { RateLimiterError } from "../Errors.js"

/**
 * The coordinator's operations, on the coordinator key of one policy (`fleetKey`).
 *
 * @since 0.3.0
 * @category models
 */
export interface ConcurrencyCoordinatorService {
  /** Names the store in logs and errors ("memory", "redis"). */
  readonly store: string
  /** One heartbeat: records `report` and answers the node's grant. */
  readonly heartbeat: (
    key: string,
    report: FleetReport,
    rules: FleetRules
  ) => Effect.Effect<FleetGrant, RateLimiterError>
  /** Removes `nodeId` at once (its share goes back to the others). Removing an absent node is a no-op. */
  readonly leave: (key: string, nodeId: string) => Effect.Effect<void, RateLimiterError>
}

/**
 * The coordinator tag.
 *
 * @since 0.3.0
 * @category tags
 */
export class ConcurrencyCoordinator extends Context.Tag("throttlekit-effect/ConcurrencyCoordinator")<
  ConcurrencyCoordinator,
  ConcurrencyCoordinatorService
>() {}

/**
 * The coordinator key of a policy, as the ThrottleKit core writes it: the block's `prefix` (default
 * `tk:fed`), then `conc:`, then the policy name, with no separator after the prefix (`tk:fedconc:api`).
 *
 * @since 0.3.0
 * @category keys
 */
export const fleetKey = (prefix: string, policy: string): string => `${prefix}conc:${policy}`

/**
 * An in-process coordinator: the nodes of every key in one map, `now` read from Effect's `Clock`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<ConcurrencyCoordinatorService> = Effect.sync(() => {
  const keys = new Map<string, Map<string, FleetNode>>()
  return {
    store: "memory",
    heartbeat: (key, report, rules) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        let nodes = keys.get(key)
        if (nodes === undefined) keys.set(key, nodes = new Map())
        return applyHeartbeat(nodes, report, now, rules)
      }),
    leave: (key, nodeId) =>
      Effect.sync(() => {
        keys.get(key)?.delete(nodeId)
      })
  }
})
