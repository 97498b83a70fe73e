/**
 * The ThrottleKit server as one layer: the validated policies in, the running gRPC server out. It is what
 * `throttlekit-effect serve` launches, and the one way tests, examples and embedding programs build a
 * server.
 *
 * What it composes, bottom to top:
 * - the store (memory, or Redis over one shared connection: one client, the scripts read once, and the
 *   coordinator on that same connection);
 * - the coordinator the two tiers and the Fleet door lease from: Redis's when the store is Redis and some
 *   policy leases from it (a fleet of servers then shares the budgets), else an in-process one;
 * - the Monitor hub;
 * - the store wrappers, two-tier / federated checks, then the Monitor tap, then the fail mode outermost
 *   (so it also covers a coordinator outage, and the Monitor records no synthesized decision: an outage
 *   is not a decision), with the `RateLimiter` front on top;
 * - the gRPC server: `throttlekit.v1.RateLimiter` over the front, `Monitor` unless `monitor: false`,
 *   `Fleet` when some policy is `federated:` (as the reference server), and health;
 *   `throttlekit_effect.admin.v1.RateLimiterAdmin` (our own admin door over the store, behind `adminSecret`,
 *   loopback callers only without one) unless `admin: false`;
 * - with `metrics`, the HTTP listener of `/metrics` (Prometheus text, from the hub and the server's error
 *   and outage counters) and `/healthz`;
 * - with `lens`, the Lens: a web page with the hub's picture and live denials, on its own HTTP port.
 *
 * With `monitor: false` the Monitor door is not served (its calls answer UNIMPLEMENTED, as an unknown
 * service) and, unless `metrics` is given, the tap is left out too: decisions go untracked. With
 * `metrics` or `lens`, the tap stays to feed them, though no Monitor door is served.
 *
 * The policies are given once, as a validated `PolicySet` (policies written in code are validated here,
 * a bad one fails the layer with `PolicyError`); every part reads that one set. Releasing the layer closes
 * the metrics listener and the Lens first (at once, open pages included), then stops the server gracefully (drain within the shutdown
 * bound), then the wrappers, the hub, the coordinator and the store, and the Redis connection last.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Coordinator } from "../coordinator/Coordinator.js"
import type { CoordinatorService } from "../coordinator/Coordinator.js"
import * as MemoryCoordinator from "../coordinator/MemoryCoordinator.js"
import * as RedisCoordinator from "../coordinator/RedisCoordinator.js"
import { isWindowed } from "../coordinator/reserve.js"
import { sameDefinition } from "../internal/sameDefinition.js"
import type * as Insurance from "../layers/Insurance.js"
import * as MemoryBackend from "../layers/MemoryBackend.js"
import * as RedisBackend from "../layers/RedisBackend.js"
import type { Policy } from "../Policy.js"
import { type PolicyError, PolicySet } from "../PolicySet.js"
import * as RedisClient from "../redis/RedisClient.js"
import * as Front from "../services/RateLimiter.js"
import * as RateLimiterAdmin from "../services/RateLimiterAdmin.js"
import type { BoundFair, LocalStore } from "../services/RateLimiterStore.js"
import * as AdminRpc from "./AdminRpc.js"
import { isAuthorized, isLoopbackPeer, monitorAuth } from "./Auth.js"
import * as FailMode from "./FailMode.js"
import * as FleetRpc from "./FleetRpc.js"
import {
  DEFAULT_PORT,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  formatAddress,
  GrpcBindError,
  GrpcServer,
  type GrpcServerOptions,
  make as makeGrpcServer,
  TlsMaterialError
} from "./GrpcServer.js"
import { LensServer, LensServerError, type LensServerOptions, make as makeLensServer } from "./lens/LensServer.js"
import { ServerCounters } from "./metrics/Counters.js"
import {
  make as makeMetricsServer,
  MetricsBindError,
  MetricsServer,
  type MetricsServerOptions
} from "./metrics/MetricsServer.js"
import { packageVersion } from "./metrics/packageVersion.js"
import { render as renderMetrics } from "./metrics/Render.js"
import * as Hub from "./monitor/Hub.js"
import * as MonitorRpc from "./monitor/MonitorRpc.js"
import * as Tap from "./monitor/Tap.js"
import * as RateLimiterRpc from "./RateLimiterRpc.js"
import * as Reload from "./Reload.js"
import { ReloadRefused, ServerReload } from "./Reload.js"
import type { ServedService } from "./Service.js"
import * as TwoTier from "./TwoTier.js"

/**
 * Where limit state lives (the server's `--store`): process memory, or Redis (a URL, plain or `Redacted`
 * when it holds a password, ioredis options, a cluster, a Sentinel-managed primary or `{ client }`), with
 * the bound on every call (default 1000 ms), an optional deployment key prefix and replica
 * acknowledgements (see `RedisClientOptions`).
 *
 * @since 0.2.0
 * @category models
 */
export type ServerStore =
  | { readonly kind: "memory" }
  | {
    readonly kind: "redis"
    readonly redis: RedisClient.RedisConnection
    readonly timeoutMs?: number
    readonly keyPrefix?: string
    readonly replicaAcks?: number
    /**
     * Insurance while Redis is unreachable (`--insurance-instances` / `--insurance-share`): limiter
     * checks and meter debits are decided in this server against its share of each limit, counted by
     * `/metrics` (see `Insurance`). @since 0.3.0
     */
    readonly insurance?: Pick<Insurance.InsuranceOptions, "instances" | "share" | "probeIntervalMs">
  }

/**
 * What the server is built from.
 *
 * @since 0.2.0
 * @category models
 */
export interface ThrottleKitServerOptions extends GrpcServerOptions {
  /**
   * The policies to serve: a `PolicySet` (from `PolicyFile.load` / `PolicyFile.parse`), or policies written in
   * code, validated here (a bad one fails the layer with `PolicyError`).
   */
  readonly policies: PolicySet | Iterable<Policy>
  /** Where limit state lives (default: memory). */
  readonly store?: ServerStore
  /** Admission lease TTL in ms (default 2000): a lease not renewed within it is reclaimed as dropped. */
  readonly leaseTtlMs?: number
  /** How limiter checks answer while the store is down (default `open`). */
  readonly failMode?: FailMode.FailMode
  /** The Monitor door's secret (none: loopback callers only). */
  readonly monitorSecret?: Redacted.Redacted<string>
  /** The Fleet door's secret (none: loopback callers only). */
  readonly fleetSecret?: Redacted.Redacted<string>
  /**
   * Serve the admin door (`throttlekit_effect.admin.v1.RateLimiterAdmin`: reset, penalize, reward, block,
   * unblock a key; default true). Without `adminSecret` it answers loopback callers only.
   *
   * @since 0.3.0
   */
  readonly admin?: boolean
  /**
   * The admin door's secret (none: loopback callers only).
   *
   * @since 0.3.0
   */
  readonly adminSecret?: Redacted.Redacted<string>
  /**
   * The node id the Monitor reports (default: the configured `host:port`) and `/metrics` labels (default:
   * the bound `host:port`); on Redis also this server's id among the nodes of a `distributedConcurrency`
   * policy (default there: `<hostname>#<pid>`, as the ThrottleKit core's server), unique per process.
   */
  readonly nodeId?: string
  /**
   * This server's region, reported by `/metrics` (`throttlekit_server_info`; default `"default"`). A
   * `federated:` policy carries its own (`PolicyFile.parse`'s `region` option sets the default).
   *
   * @since 0.3.0
   */
  readonly region?: string
  /**
   * Serve the Monitor door (default true). Without it (and without `metrics`) no decision is tracked.
   *
   * @since 0.3.0
   */
  readonly monitor?: boolean
  /**
   * Serve `/metrics` (Prometheus text) and `/healthz` over HTTP on this port (0: a free one), on `host`
   * (default `127.0.0.1`). None: not served.
   *
   * @since 0.3.0
   */
  readonly metrics?: MetricsServerOptions
  /**
   * Serve the Lens (a web page with the Monitor's picture and live denials) over HTTP on this port (0: a
   * free one), on `host` (default `127.0.0.1`; another needs `secret`). None: not served.
   *
   * @since 0.3.0
   */
  readonly lens?: LensServerOptions
  /**
   * The most Monitor Watch streams open at once (default 100; 0 refuses every Watch): one more is
   * answered RESOURCE_EXHAUSTED. A whole number; anything else fails the layer with `StartupError`.
   */
  readonly maxWatchStreams?: number
  /** A coordinator to use instead of the store's (embedding and tests). */
  readonly coordinator?: CoordinatorService
  /**
   * Serve every policy in shadow mode (`serve --shadow`): as if each had `shadow: true` (decided and
   * recorded as usual, a denial answered allowed and counted as a shadow denial). Default false: each
   * policy's own `shadow` holds.
   *
   * @since 0.3.0
   */
  readonly shadow?: boolean
}

/**
 * The server could not start for a reason outside the config and the bind (unreadable TLS files, an
 * unavailable store).
 *
 * @since 0.1.0
 * @category errors
 */
export class StartupError extends Schema.TaggedError<StartupError>()("StartupError", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/**
 * Everything that stops the layer from building.
 *
 * @since 0.2.0
 * @category errors
 */
export type ThrottleKitServerError =
  | PolicyError
  | GrpcBindError
  | TlsMaterialError
  | StartupError
  | MetricsBindError
  | LensServerError

/**
 * True when some policy leases from the coordinator (federated, or two-tier leased on a windowed strategy).
 *
 * @since 0.1.0
 * @category utils
 * @internal
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

/**
 * True when the Fleet door is served: some policy is `federated:`.
 *
 * @since 0.2.0
 * @category utils
 * @internal
 */
export const servesFleet = (policies: PolicySet): boolean => FleetRpc.leasablePolicies(policies).size > 0

/**
 * Startup warnings for a server of `policies` bound on `host`: a door without a secret answers loopback
 * callers only, which a server on a public address probably did not mean.
 *
 * @since 0.2.0
 * @category utils
 * @internal
 */
export const warnings = (
  options: {
    readonly policies: PolicySet
    readonly monitorSecret?: Redacted.Redacted<string> | undefined
    readonly fleetSecret?: Redacted.Redacted<string> | undefined
    readonly adminSecret?: Redacted.Redacted<string> | undefined
    readonly monitor?: boolean | undefined
    readonly admin?: boolean | undefined
  },
  host: string
): ReadonlyArray<string> => {
  if (isLoopbackPeer(host)) return []
  const doors = [
    ...(options.monitor !== false && options.monitorSecret === undefined ? ["Monitor"] : []),
    ...(servesFleet(options.policies) && options.fleetSecret === undefined ? ["Fleet"] : []),
    ...(options.admin !== false && options.adminSecret === undefined ? ["Admin"] : [])
  ]
  return doors.length === 0 ? [] : [
    `warning: ${listed(doors)} ${doors.length === 1 ? "answers" : "answer"} loopback callers only ` +
    `(remote calls get UNAUTHENTICATED); pass ${doors.map((d) => `--${d.toLowerCase()}-secret`).join(" / ")} ` +
    "to allow remote callers"
  ]
}

/** "A", "A and B", "A, B and C". */
const listed = (names: ReadonlyArray<string>): string =>
  names.length <= 1 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`

/** `maxWatchStreams`, when given, is a whole number from 0. */
const checkMaxWatchStreams = (options: ThrottleKitServerOptions): Effect.Effect<void, StartupError> => {
  const max = options.maxWatchStreams
  return max === undefined || (Number.isSafeInteger(max) && max >= 0)
    ? Effect.void
    : Effect.fail(new StartupError({ reason: `maxWatchStreams must be a whole number from 0, got ${max}` }))
}

/** The fleet node id of `distributedConcurrency` policies: `nodeId`, else the store's default (`host#pid`). */
const nodeOf = (options: ThrottleKitServerOptions) => options.nodeId === undefined ? {} : { nodeId: options.nodeId }

/**
 * The store's generations: the store of the first policy set, and how to build the store of a reloaded
 * one (`Reload`). Memory: on the same key tables, keeping the state of unchanged policies. Redis: a new
 * store over the same connection (the state is in Redis, at the same keys).
 */
interface StoreGenerations {
  readonly first: LocalStore
  readonly next: (policies: PolicySet) => Effect.Effect<LocalStore, ReloadRefused, Scope.Scope>
}

/** The store's generations, as the server builds them. */
class BaseStore extends Context.Tag("throttlekit-effect/server/BaseStore")<BaseStore, StoreGenerations>() {}

/**
 * `next` with the fair-escrow tenants of `previous` kept for each fair policy whose definition did not
 * change: on Redis they live in this process (only a federated pool is in Redis).
 */
const keepFairTenants = (previous: LocalStore, next: LocalStore): LocalStore => {
  const kept = new Map<string, BoundFair>()
  for (const policy of next.policies) {
    const before = previous.policies.get(policy.name)
    if (policy.kind === "fair" && Option.isSome(before) && sameDefinition(before.value, policy)) {
      kept.set(policy.name, previous.fair(policy))
    }
  }
  if (kept.size === 0) return next
  return { ...next, fair: (policy) => kept.get(policy.name) ?? next.fair(policy) }
}

/** A reload whose store cannot be built is refused with the store's reason. */
const refusedBy = (error: { readonly message: string }) => new ReloadRefused({ reason: error.message })

/** The store and the coordinator, over one Redis connection when the store is Redis. */
const backing = (
  options: ThrottleKitServerOptions,
  policies: PolicySet,
  counters: ServerCounters
): Layer.Layer<BaseStore | Coordinator, PolicyError | StartupError> => {
  const lease = options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }
  const given = options.coordinator === undefined ? undefined : Layer.succeed(Coordinator, options.coordinator)
  const store = options.store ?? { kind: "memory" }
  switch (store.kind) {
    case "memory":
      return Layer.merge(
        Layer.effect(
          BaseStore,
          Effect.map(MemoryBackend.makeReloadableStore({ policies, ...lease }), (reloadable) => ({
            first: reloadable.store,
            next: (next) => Effect.sync(() => reloadable.reload(next))
          }))
        ),
        given ?? MemoryCoordinator.layer()
      )
    case "redis": {
      const failed = (what: string) => (error: { readonly message: string }) =>
        new StartupError({ reason: `${what} failed to start: ${error.message}` })
      const connection = RedisClient.layer(store.redis, {
        timeoutMs: store.timeoutMs,
        keyPrefix: store.keyPrefix,
        replicaAcks: store.replicaAcks
      }).pipe(Layer.mapError(failed("the Redis store")))
      const coordinator = given ?? (usesCoordinator(policies)
        ? RedisCoordinator.layerShared().pipe(Layer.mapError(failed("the coordinator")))
        : MemoryCoordinator.layer())
      const generations = Layer.scoped(
        BaseStore,
        Effect.gen(function*() {
          const redis = yield* RedisClient.RedisClient
          const first = yield* RedisBackend.makeStoreShared({
            policies,
            ...lease,
            ...nodeOf(options),
            ...(store.insurance === undefined ? {} : {
              insurance: {
                ...store.insurance,
                onDegraded: counters.degradedAnswered,
                onStateChange: counters.storeDegraded
              }
            })
          })
          let previous = first
          return {
            first,
            // A reload refuses distributedConcurrency policies on Redis (`refusal`): a plain store is enough.
            next: (next: PolicySet) =>
              Effect.map(
                Effect.mapError(RedisBackend.makeStoreOn(redis, { policies: next, ...lease }), refusedBy),
                (store) => previous = keepFairTenants(previous, store)
              )
          }
        })
      )
      return Layer.merge(
        generations.pipe(
          Layer.mapError((error) => error._tag === "PolicyError" ? error : failed("the Redis store")(error))
        ),
        coordinator
      ).pipe(Layer.provide(connection))
    }
  }
}

/**
 * The services beside RateLimiter and health: the Monitor (unless turned off), the Fleet door when
 * some policy is federated, and the admin door (unless turned off) over the store.
 */
const doors = (options: ThrottleKitServerOptions, policies: PolicySet) =>
  Effect.gen(function*() {
    const hub = yield* Hub.MonitorHub
    const coordinator = yield* Coordinator
    const admin = yield* RateLimiterAdmin.RateLimiterAdmin
    const services: Array<ServedService> = []
    if (options.monitor !== false) {
      services.push(MonitorRpc.make({
        hub,
        secret: Option.fromNullable(options.monitorSecret),
        ...(options.maxWatchStreams === undefined ? {} : { maxWatchStreams: options.maxWatchStreams })
      }))
    }
    if (servesFleet(policies)) {
      // The Fleet door follows reloads: it reads the policies served now on each call.
      const reloader = yield* ServerReload
      const served = {
        get policies() {
          return reloader.policies().policies
        }
      }
      services.push(FleetRpc.make({ policies: served, coordinator, secret: Option.fromNullable(options.fleetSecret) }))
    }
    if (options.admin !== false) {
      services.push(AdminRpc.make({
        admin,
        secret: Option.fromNullable(options.adminSecret)
      }))
    }
    return services
  })

/** The gRPC server over the front, the hub and the coordinator in context; error answers go to `counters`. */
const serving = (
  options: ThrottleKitServerOptions,
  policies: PolicySet,
  counters: ServerCounters
): Layer.Layer<
  GrpcServer,
  GrpcBindError | TlsMaterialError,
  Front.RateLimiter | Hub.MonitorHub | Coordinator | ServerReload | RateLimiterAdmin.RateLimiterAdmin
> =>
  Layer.scoped(
    GrpcServer,
    Effect.gen(function*() {
      const limiter = yield* Front.RateLimiter
      const services = yield* doors(options, policies)
      const grpc: GrpcServerOptions = {
        ...(options.host === undefined ? {} : { host: options.host }),
        ...(options.port === undefined ? {} : { port: options.port }),
        ...(options.tls === undefined ? {} : { tls: options.tls }),
        ...(options.shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs: options.shutdownTimeoutMs }),
        ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
        ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
        ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections })
      }
      // A NOT_FOUND lists the configured policies to the callers the Monitor answers (its snapshot names
      // every policy anyway): loopback peers, or with a Monitor secret, the callers presenting it.
      const monitor = monitorAuth(Option.fromNullable(options.monitorSecret))
      const rateLimiter = RateLimiterRpc.make(limiter, { listPolicies: (call) => isAuthorized(monitor, call) })
      return yield* makeGrpcServer(grpc, [rateLimiter, ...services], counters.rpcFailed)
    })
  )

/**
 * The region a server reports when none is given.
 *
 * @since 0.3.0
 * @category constants
 */
export const DEFAULT_REGION = "default"

/** `policies`, each in shadow mode (`shadow: true`): the server-wide `shadow` switch. */
const allShadowed = (policies: PolicySet): Effect.Effect<PolicySet, PolicyError> =>
  PolicySet.from(policies.policies.map((policy): Policy => ({ ...policy, shadow: true })))

/**
 * Why this server cannot serve `after` (reloaded) without a restart, if it cannot: what was decided once,
 * at startup, from the first policy set.
 */
const refusal = (
  options: ThrottleKitServerOptions,
  before: PolicySet,
  after: PolicySet,
  started: { readonly fleet: boolean; readonly sharedCoordinator: boolean }
): string | undefined => {
  if (servesFleet(after) && !started.fleet) {
    return "a federated: policy needs the Fleet door, which is served only when the startup config has one: " +
      "restart the server to add it"
  }
  if (options.store?.kind !== "redis") return undefined
  if (options.store.insurance !== undefined) {
    return "a Redis store with insurance is not reloadable (its state would restart): restart the server"
  }
  if (usesCoordinator(after) && !started.sharedCoordinator) {
    return "a federated: or leased two-tier policy on a windowed strategy needs the Redis coordinator, which is " +
      "started only when the startup config needs it: restart the server to add it"
  }
  const distributed = [...before, ...after].find((p) => p.kind === "admitter" && p.distributed !== undefined)
  if (distributed !== undefined) {
    return `distributedConcurrency policies on Redis are not reloadable (policy ${
      JSON.stringify(distributed.name)
    }): ` +
      "restart the server"
  }
  return undefined
}

/**
 * The served `RateLimiter` and the `ServerReload`: each generation is the store of one policy set under
 * its wrappers (outermost first: the fail mode, the Monitor tap, the two tiers) and the front on top.
 */
const generations = (
  options: ThrottleKitServerOptions,
  first: PolicySet,
  counters: ServerCounters
): Layer.Layer<
  Front.RateLimiter | ServerReload | RateLimiterAdmin.RateLimiterAdmin,
  never,
  BaseStore | Coordinator | Hub.MonitorHub
> =>
  Layer.scopedContext(Effect.gen(function*() {
    const base = yield* BaseStore
    const coordinator = yield* Coordinator
    const hub = yield* Hub.MonitorHub
    // Decisions are tracked for the Monitor door, /metrics or the Lens; with none, the tap is left out.
    const tracked = options.monitor !== false || options.metrics !== undefined || options.lens !== undefined
    const failMode = {
      mode: options.failMode ?? FailMode.DEFAULT_FAIL_MODE,
      onOutage: counters.outageAnswered
    }
    const started = {
      fleet: servesFleet(first),
      sharedCoordinator: options.coordinator !== undefined || usesCoordinator(first)
    }
    let admin: RateLimiterAdmin.RateLimiterAdminService | undefined
    const currentAdmin = () => admin!
    const followingAdmin: RateLimiterAdmin.RateLimiterAdminService = {
      backend: base.first.backend,
      reset: (policy, key) => currentAdmin().reset(policy, key),
      penalize: (policy, key, units) => currentAdmin().penalize(policy, key, units),
      reward: (policy, key, units) => currentAdmin().reward(policy, key, units),
      block: (policy, key, duration) => currentAdmin().block(policy, key, duration),
      unblock: (policy, key) => currentAdmin().unblock(policy, key)
    }
    // Lives with the server: unchanged two-tier policies keep their local credits across reloads.
    const twoTiers = yield* TwoTier.makeReloadable(coordinator)
    const build = (policies: PolicySet, before: PolicySet | undefined) =>
      Effect.gen(function*() {
        const store = before === undefined ? base.first : yield* base.next(policies)
        if (before !== undefined) hub.reload(policies.policies)
        const twoTier = yield* twoTiers(store)
        const wrapped = yield* FailMode.make(tracked ? Tap.wrap(twoTier, hub) : twoTier, failMode)
        // The admin door follows the same generations as the front (it binds the policies of its store).
        admin = RateLimiterAdmin.make(wrapped)
        // Costs above a capacity get the contract's denial on the wire (`overCapacity: "deny"`).
        return yield* Front.make(wrapped, { overCapacity: "deny" })
      })
    const { limiter, reloader } = yield* Reload.make({
      first,
      build,
      refuse: (before, after) => refusal(options, before, after, started),
      graceMs: options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS
    }).pipe(Effect.orDie) // the first generation is built from the store already made: it cannot be refused
    // The server-wide shadow switch applies to a reloaded file as to the first one.
    const reload: Reload.Reloader["reload"] = options.shadow === true
      ? (next) => Effect.flatMap(Effect.mapError(allShadowed(next), refusedBy), reloader.reload)
      : reloader.reload
    return Context.make(Front.RateLimiter, limiter).pipe(
      Context.add(ServerReload, { ...reloader, reload }),
      Context.add(RateLimiterAdmin.RateLimiterAdmin, followingAdmin)
    )
  }))

/**
 * The metrics listener when `options.metrics` asks for one (none otherwise), over the hub and the
 * counters. Its node id is `options.nodeId`, else the gRPC server's bound address.
 */
const metricsListener = (
  options: ThrottleKitServerOptions,
  counters: ServerCounters
): Layer.Layer<MetricsServer, MetricsBindError, GrpcServer | Hub.MonitorHub> => {
  const metrics = options.metrics
  if (metrics === undefined) return Layer.succeed(MetricsServer, Option.none())
  return Layer.scoped(
    MetricsServer,
    Effect.gen(function*() {
      const hub = yield* Hub.MonitorHub
      const grpc = yield* GrpcServer
      const info = {
        version: yield* packageVersion,
        region: options.region ?? DEFAULT_REGION,
        nodeId: options.nodeId ?? grpc.address,
        store: options.store?.kind ?? "memory",
        failMode: options.failMode ?? FailMode.DEFAULT_FAIL_MODE
      }
      const page = Effect.map(
        Effect.zip(hub.snapshot, grpc.connections),
        ([snapshot, connections]) =>
          renderMetrics(snapshot, counters, info, {
            connections,
            watchStreams: hub.watchers(),
            watchDropped: hub.watchDropped()
          })
      )
      return Option.some(yield* makeMetricsServer(metrics, page))
    })
  )
}

/** The Lens when `options.lens` asks for one (none otherwise), over the hub. */
const lensListener = (options: ThrottleKitServerOptions): Layer.Layer<LensServer, LensServerError, Hub.MonitorHub> => {
  const lens = options.lens
  if (lens === undefined) return Layer.succeed(LensServer, Option.none())
  return Layer.scoped(
    LensServer,
    Effect.flatMap(Hub.MonitorHub, (hub) => Effect.map(makeLensServer(lens, hub), Option.some))
  )
}

/**
 * The server, running for the life of the layer. Provides the running `GrpcServer` (its bound address:
 * give `port: 0` for a free one), the `MonitorHub` and `Coordinator` it serves from, its
 * `MetricsServer` (the bound address of `/metrics`, when `metrics` is given), its `LensServer` (the
 * bound address of the Lens, when `lens` is given), and its `ServerReload` (since 0.3.0):
 * `reload(policies)` serves a new, validated policy set from the next call on, keeping the state of the
 * policies whose definition did not change, or refuses it with `ReloadRefused` (nothing changed) when the
 * server cannot take it without a restart.
 *
 * @example
 * ```ts
 * import { Console, Effect } from "effect"
 * import { PolicyFile } from "throttlekit-effect"
 * import { ThrottleKitServer } from "throttlekit-effect/server"
 *
 * // Serves while the program using the layer runs (`Layer.launch(server)` serves until interrupted).
 * export const main = Effect.gen(function*() {
 *   const policies = yield* PolicyFile.load("policies.yaml")
 *   const server = ThrottleKitServer.layer({ policies, store: { kind: "memory" }, port: 0 }) // port 0: a free one
 *   yield* Effect.gen(function*() {
 *     const { address } = yield* ThrottleKitServer.GrpcServer
 *     yield* Console.log(`serving on ${address}`)
 *   }).pipe(Effect.provide(server))
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: ThrottleKitServerOptions
): Layer.Layer<
  GrpcServer | Hub.MonitorHub | Coordinator | MetricsServer | LensServer | ServerReload,
  ThrottleKitServerError
> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const given = yield* Effect.zipLeft(PolicySet.from(options.policies), checkMaxWatchStreams(options))
      const policies = options.shadow === true ? yield* allShadowed(given) : given
      const counters = yield* Effect.sync(() => new ServerCounters())
      const store = options.store ?? { kind: "memory" }
      const nodeId = options.nodeId ??
        formatAddress(options.host ?? "127.0.0.1", options.port ?? DEFAULT_PORT)
      const base = Layer.merge(
        backing(options, policies, counters),
        Hub.layer({ policies, nodeId, backend: store.kind })
      )
      // Built last, so released first: /metrics and the Lens close before the gRPC server drains.
      return Layer.merge(metricsListener(options, counters), lensListener(options)).pipe(
        Layer.provideMerge(serving(options, policies, counters)),
        Layer.provideMerge(generations(options, policies, counters)),
        Layer.provideMerge(base),
        Layer.map((context) => Context.omit(BaseStore, Front.RateLimiter, RateLimiterAdmin.RateLimiterAdmin)(context))
      )
    })
  )

export {
  /** @since 0.2.0 */
  GrpcBindError,
  /** @since 0.2.0 */
  GrpcServer,
  /** @since 0.3.0 */
  LensServer,
  /** @since 0.3.0 */
  LensServerError,
  /** @since 0.3.0 */
  MetricsBindError,
  /** @since 0.3.0 */
  MetricsServer,
  /** @since 0.3.0 */
  ReloadRefused,
  /** @since 0.3.0 */
  ServerReload,
  /** @since 0.2.0 */
  TlsMaterialError
}

export type {
  /** @since 0.3.0 */
  LensServerOptions,
  /** @since 0.3.0 */
  RunningLensServer
} from "./lens/LensServer.js"

export type {
  /** @since 0.3.0 */
  Reloader,
  /** @since 0.3.0 */
  ReloadSummary
} from "./Reload.js"

export type {
  /** @since 0.3.0 */
  MetricsServerOptions,
  /** @since 0.3.0 */
  RunningMetricsServer
} from "./metrics/MetricsServer.js"
