/**
 * What the server adds around its store for the fleet and the Monitor: the coordinator, the store
 * wrappers (two-tier / federated checks, then the Monitor tap, then the fail mode outermost) with the
 * `RateLimiter` front on top, the Monitor hub, and the `Monitor` and `Fleet` gRPC services. The server
 * builds this once, in its own scope, before it starts serving, so the coordinator and the hub outlive
 * every call.
 *
 * The policies are the one validated `PolicySet` the server loaded, the same set its store serves: the
 * hub and the Fleet door read it here, the wrappers read it from the store (`around` checks the two are
 * one set).
 *
 * - The coordinator is Redis's when the store is Redis and some policy leases from it (a fleet of servers
 *   then shares the budgets), else an in-process one.
 * - The Monitor is always served; the Fleet door only when there is a `federated:` policy (as the
 *   reference server).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { PolicySet } from "../Config.js"
import type { CoordinatorService } from "../coordinator/Coordinator.js"
import * as MemoryCoordinator from "../coordinator/MemoryCoordinator.js"
import * as RedisCoordinator from "../coordinator/RedisCoordinator.js"
import { isWindowed } from "../coordinator/reserve.js"
import type { BackendError, ServiceUnavailable } from "../Errors.js"
import * as TwoTier from "../layers/TwoTier.js"
import * as Hub from "../monitor/Hub.js"
import * as MonitorRpc from "../monitor/MonitorRpc.js"
import * as Tap from "../monitor/Tap.js"
import type { Policy } from "../Policy.js"
import * as FailMode from "../server/FailMode.js"
import type { ServedService } from "../server/Service.js"
import * as Front from "../services/RateLimiter.js"
import { type RateLimiterStore, Store } from "../services/RateLimiterStore.js"
import { isLoopbackPeer } from "./Auth.js"
import * as FleetRpc from "./FleetRpc.js"

/**
 * What the doors are built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerDoorsOptions {
  /** The policies the server loaded: the set its store serves. */
  readonly policies: PolicySet
  /** Where limit state lives (the server's `--store`). */
  readonly store: { readonly kind: "memory" } | { readonly kind: "redis"; readonly url: string }
  /** The Monitor door's secret (none: loopback callers only). */
  readonly monitorSecret: Option.Option<Redacted.Redacted<string>>
  /** The Fleet door's secret (none: loopback callers only). */
  readonly fleetSecret: Option.Option<Redacted.Redacted<string>>
  /** The node id the Monitor reports (the configured `host:port`). */
  readonly nodeId: string
  /** A coordinator to use instead of the store's (embedding and tests). */
  readonly coordinator?: CoordinatorService
  /** How limiter checks answer while the store is down (the server's `--fail`; default `open`). */
  readonly failMode?: FailMode.FailMode
}

/**
 * The built doors.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerDoors {
  /**
   * The served `RateLimiter` over `store`: two-tier checks, then the Monitor tap, then the fail mode
   * (outermost, so it also covers a coordinator outage and the Monitor records no synthesized decision),
   * then the front. The store must serve the doors' `policies`.
   */
  readonly around: <E, R>(store: Layer.Layer<Store, E, R>) => Layer.Layer<Front.RateLimiter, E, R>
  /** The Monitor service, and the Fleet service when some policy is federated. */
  readonly services: ReadonlyArray<ServedService>
  /** The coordinator the two tiers share. */
  readonly coordinator: CoordinatorService
  /** The Monitor hub. */
  readonly hub: Hub.Hub
  /** Startup warnings for a server bound on `host` (e.g. loopback-only doors on a public address). */
  readonly warnings: (host: string) => ReadonlyArray<string>
}

/**
 * True when some policy leases from the coordinator (federated, or two-tier leased on a windowed strategy).
 *
 * @since 0.1.0
 * @category utils
 */
export const usesCoordinator = (policies: Iterable<Policy>): boolean => {
  for (const p of policies) {
    if (
      p.kind === "limiter" &&
      (p.federated !== undefined || (p.twoTier?.mode === "leased" && isWindowed(p.strategy)))
    ) return true
  }
  return false
}

/** Whether two sets hold the same policies (the same set, or one decoded twice from the same source). */
const samePolicies = (a: PolicySet, b: PolicySet): boolean =>
  a === b || JSON.stringify(a.policies) === JSON.stringify(b.policies)

/**
 * Builds the doors; the coordinator's connection and the hub live in the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ServerDoorsOptions
): Effect.Effect<ServerDoors, ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const coordinator = options.coordinator !== undefined
      ? options.coordinator
      : options.store.kind === "redis" && usesCoordinator(options.policies)
      ? yield* RedisCoordinator.make({ redis: options.store.url })
      : MemoryCoordinator.make()
    const hub = yield* Hub.make({ policies: options.policies, nodeId: options.nodeId, backend: options.store.kind })
    const federated = FleetRpc.leasablePolicies(options.policies).size > 0
    const services: Array<ServedService> = [MonitorRpc.make({ hub, secret: options.monitorSecret })]
    if (federated) {
      services.push(FleetRpc.make({ policies: options.policies, coordinator, secret: options.fleetSecret }))
    }

    const failMode = options.failMode ?? FailMode.DEFAULT_FAIL_MODE
    /** The wrapped store: a local one serving the doors' policies (the server's stores are local). */
    const wrapped = (store: RateLimiterStore): Effect.Effect<RateLimiterStore, never, Scope.Scope> => {
      if (store._tag !== "Local") return Effect.succeed(store)
      if (!samePolicies(store.policies, options.policies)) {
        return Effect.dieMessage("ServerDoors: the store must serve the policies the doors were built with")
      }
      return Effect.flatMap(
        TwoTier.make(store, coordinator),
        (twoTier) => FailMode.make(Tap.wrap(twoTier, hub), { mode: failMode })
      )
    }

    const around = <E, R>(store: Layer.Layer<Store, E, R>): Layer.Layer<Front.RateLimiter, E, R> =>
      Layer.scoped(
        Front.RateLimiter,
        Effect.flatMap(Effect.flatMap(Store, wrapped), (served) => Front.make(served))
      ).pipe(Layer.provide(store))

    const warnings = (host: string): ReadonlyArray<string> => {
      if (isLoopbackPeer(host)) return []
      const doors = [
        ...(Option.isNone(options.monitorSecret) ? ["Monitor"] : []),
        ...(federated && Option.isNone(options.fleetSecret) ? ["Fleet"] : [])
      ]
      return doors.length === 0 ? [] : [
        `warning: ${doors.join(" and ")} ${doors.length === 1 ? "answers" : "answer"} loopback callers only ` +
        `(remote calls get UNAUTHENTICATED); pass ${doors.map((d) => `--${d.toLowerCase()}-secret`).join(" / ")} ` +
        "to allow remote callers"
      ]
    }

    return { around, services, coordinator, hub, warnings }
  })
