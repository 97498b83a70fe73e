/**
 * The ioredis client of a Redis backend, as a scoped resource. A client we create is configured so that a
 * consuming script is never applied twice and no call waits for a connection that is not there:
 * no offline queue (a command while disconnected fails at once), no automatic resend of commands that
 * were in flight when the connection dropped, and no per-request retries. Calls are bounded by the
 * script runner (one timer for all calls in flight), not by ioredis' `commandTimeout`, which arms a timer
 * per command. ioredis keeps reconnecting in the background, so the backend recovers by itself when Redis
 * comes back.
 *
 * `RedisClient` is that connection as a service, to share: one client, the vendored script catalog read
 * once, and one script runner over the client (one timer and one write-coalescing cork for every call).
 * The Redis store and the Redis coordinator take it from context (`RedisBackend.layerStoreShared`,
 * `RedisCoordinator.layerShared`), so a server that runs both opens one connection; their option-based
 * constructors (`{ redis: url }`) open their own.
 *
 * A URL may carry a password: give it as `Redacted` (e.g. `Config.redacted("REDIS_URL")` through
 * `layerConfig`). No error, log or span we produce names the URL: a URL ioredis cannot parse fails with a
 * `BackendError` that does not repeat it (nor carries the parser's error, which does).
 *
 * `layer` and `layerConfig` take the connection; there is no `layerFile` (a connection holds no policies).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis"
import { BackendError, type ServiceUnavailable } from "../Errors.js"
import { classify, timedOut } from "./RedisErrors.js"
import * as RedisTime from "./RedisTime.js"
import { makeScriptRunner, type ScriptRunner } from "./ScriptRunner.js"
import { loadScripts, type ScriptCatalog } from "./Scripts.js"

/**
 * A node's address: `"host:port"` or `{ host, port }`.
 *
 * @since 0.3.0
 * @category models
 */
export type NodeAddress = string | { readonly host: string; readonly port: number }

/**
 * A Redis Cluster, reached through seed nodes (any few of its nodes: the client discovers the rest and
 * follows MOVED / ASK redirections and resharding). Decisions always read and write the primary of a
 * key's slot; replicas are never read.
 *
 * @since 0.3.0
 * @category models
 */
export interface ClusterConnection {
  /** Seed nodes. */
  readonly cluster: ReadonlyArray<NodeAddress>
  /** The nodes' password (`requirepass` / ACL), plain or `Redacted`. */
  readonly password?: string | Redacted.Redacted<string> | undefined
  /** The ACL user, when not `default`. */
  readonly username?: string | undefined
  /** More ioredis cluster options (ours on top: no offline queue, primaries only). */
  readonly options?: ClusterOptions | undefined
}

/**
 * A primary managed by Redis Sentinel: the sentinels are asked for the current primary of `name`, and
 * asked again after a failover.
 *
 * @since 0.3.0
 * @category models
 */
export interface SentinelConnection {
  /** The sentinels. */
  readonly sentinels: ReadonlyArray<NodeAddress>
  /** The monitored primary's name (`sentinel monitor <name> …`). */
  readonly name: string
  /** The data nodes' password, plain or `Redacted`. */
  readonly password?: string | Redacted.Redacted<string> | undefined
  /** The sentinels' own password, when they have one. */
  readonly sentinelPassword?: string | Redacted.Redacted<string> | undefined
  /** The ACL user of the data nodes, when not `default`. */
  readonly username?: string | undefined
  /** The database number (default 0). */
  readonly db?: number | undefined
}

/**
 * An ioredis client of either shape: one node (or a Sentinel-managed primary) or a cluster.
 *
 * @since 0.3.0
 * @category models
 */
export type RedisHandle = Redis | Cluster

/**
 * How to reach Redis: a URL (`redis://host:port/db`), plain or `Redacted` (for a URL that holds a
 * password), ioredis options, a cluster (`{ cluster: seeds }`), a Sentinel-managed primary
 * (`{ sentinels, name }`), or an existing client, `Redis` or `Cluster` (which stays yours: it is neither
 * configured nor closed by the backend).
 *
 * @since 0.1.0
 * @category models
 */
export type RedisConnection =
  | string
  | Redacted.Redacted<string>
  | RedisOptions
  | ClusterConnection
  | SentinelConnection
  | { readonly client: RedisHandle }

/**
 * The default bound on every Redis call, in ms.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_TIMEOUT_MS = 1000

/**
 * The options forced on a client the backend creates (see the module doc).
 *
 * @since 0.1.0
 * @category utils
 */
export const safeOptions: RedisOptions = {
  lazyConnect: true,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0
}

/** Defaults a caller may override: how fast to reconnect and how long a connect attempt may take. */
const defaultOptions = (timeoutMs: number): RedisOptions => ({
  connectTimeout: Math.max(timeoutMs, 1000),
  retryStrategy: (attempt: number) => Math.min(attempt * 50, 1000)
})

/**
 * The options forced on a cluster client the backend creates: the node options above, no offline queue,
 * and every command on a primary (a replica may lag, so it never decides).
 *
 * @since 0.3.0
 * @category utils
 */
export const safeClusterOptions: ClusterOptions = {
  lazyConnect: true,
  enableOfflineQueue: false,
  scaleReads: "master"
}

/** Timeouts run on the real clock, so a `TestClock` never stalls a bound. */
const liveClock = Clock.make()

/** How long a close waits for Redis to answer QUIT before dropping the socket, in ms. */
const QUIT_BOUND_MS = 250

/**
 * Closes our client within a bound, whatever Redis does: QUIT (a polite goodbye) raced against a timeout
 * on the live clock, then `disconnect()` in every case. Finalizers run uninterruptibly, so the wait is made
 * interruptible for the timeout to cut it short: an unanswered QUIT (a frozen Redis) never holds a close.
 */
const closeClient = (client: RedisHandle, timeoutMs: number) =>
  Effect.tryPromise(() => client.quit()).pipe(
    Effect.interruptible,
    Effect.timeoutOption(Math.min(timeoutMs, QUIT_BOUND_MS)),
    Effect.withClock(liveClock),
    Effect.ignore,
    Effect.ensuring(Effect.sync(() => client.disconnect()))
  )

/**
 * The error of a connection ioredis refuses to build (e.g. a URL it cannot parse). Neither the URL nor
 * the parser's error (whose `input` repeats it) goes in: only the error's code or name.
 */
const unusable = (cause: unknown): BackendError => {
  const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : cause instanceof Error
    ? cause.name
    : "unknown"
  return new BackendError({
    backend: "redis",
    code: "CONFIG",
    detail: `the Redis connection (URL or options) is not usable (${code})`
  })
}

const secret = (value: string | Redacted.Redacted<string> | undefined): string | undefined =>
  value === undefined ? undefined : Redacted.isRedacted(value) ? Redacted.value(value) : value

/** `"host:port"` or `{ host, port }` as ioredis takes it; a string without a valid port fails. */
const addressOf = (address: NodeAddress): { host: string; port: number } | undefined => {
  if (typeof address !== "string") return { host: address.host, port: address.port }
  const colon = address.lastIndexOf(":")
  const port = Number(address.slice(colon + 1))
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port }
}

const addressesOf = (addresses: ReadonlyArray<NodeAddress>, what: string) => {
  const parsed = addresses.map(addressOf)
  const bad = parsed.indexOf(undefined)
  if (addresses.length === 0) return Effect.fail(unusableShape(`${what}: at least one node is needed`))
  if (bad >= 0) return Effect.fail(unusableShape(`${what}: node ${bad + 1} is not host:port`))
  return Effect.succeed(parsed as Array<{ host: string; port: number }>)
}

const unusableShape = (detail: string): BackendError =>
  new BackendError({ backend: "redis", code: "CONFIG", detail: `the Redis connection is not usable: ${detail}` })

/**
 * True for a cluster connection.
 *
 * @since 0.3.0
 * @category guards
 */
export const isClusterConnection = (connection: RedisConnection): connection is ClusterConnection =>
  typeof connection === "object" && !Redacted.isRedacted(connection) && "cluster" in connection

/**
 * True for a Sentinel connection (ours, `{ sentinels, name }` with addresses as strings or objects).
 *
 * @since 0.3.0
 * @category guards
 */
export const isSentinelConnection = (connection: RedisConnection): connection is SentinelConnection =>
  typeof connection === "object" && !Redacted.isRedacted(connection) && "sentinels" in connection &&
  "name" in connection && typeof connection.name === "string" && Array.isArray(connection.sentinels)

const newCluster = (connection: ClusterConnection, timeoutMs: number) =>
  Effect.flatMap(addressesOf(connection.cluster, "cluster"), (seeds) =>
    Effect.try({
      try: () => {
        const given = connection.options ?? {}
        const password = secret(connection.password)
        return new Cluster(seeds, {
          slotsRefreshTimeout: Math.max(timeoutMs, 1000),
          ...given,
          ...safeClusterOptions,
          redisOptions: {
            ...defaultOptions(timeoutMs),
            ...given.redisOptions,
            ...(password === undefined ? {} : { password }),
            ...(connection.username === undefined ? {} : { username: connection.username }),
            ...safeOptions
          }
        })
      },
      catch: unusable
    }))

const newSentinel = (connection: SentinelConnection, timeoutMs: number) =>
  Effect.flatMap(addressesOf(connection.sentinels, "sentinels"), (sentinels) =>
    Effect.try({
      try: () => {
        const password = secret(connection.password)
        const sentinelPassword = secret(connection.sentinelPassword)
        return new Redis({
          ...defaultOptions(timeoutMs),
          sentinels,
          name: connection.name,
          role: "master",
          // Asks the sentinels again as soon as they announce a new primary, not only on a dropped socket.
          failoverDetector: true,
          sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 50, 1000),
          ...(password === undefined ? {} : { password }),
          ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
          ...(connection.username === undefined ? {} : { username: connection.username }),
          ...(connection.db === undefined ? {} : { db: connection.db }),
          ...safeOptions
        })
      },
      catch: unusable
    }))

/** Our client for `connection` (a URL, plain or redacted, options, a cluster or sentinels), with the safe options on top. */
const newClient = (
  connection: Exclude<RedisConnection, { readonly client: RedisHandle }>,
  timeoutMs: number
): Effect.Effect<RedisHandle, BackendError> =>
  isClusterConnection(connection)
    ? newCluster(connection, timeoutMs)
    : isSentinelConnection(connection)
    ? newSentinel(connection, timeoutMs)
    : Effect.try({
      try: () =>
        typeof connection === "string"
          ? new Redis(connection, { ...defaultOptions(timeoutMs), ...safeOptions })
          : Redacted.isRedacted(connection)
          ? new Redis(Redacted.value(connection), { ...defaultOptions(timeoutMs), ...safeOptions })
          : new Redis({ ...defaultOptions(timeoutMs), ...connection, ...safeOptions }),
      catch: unusable
    })

const connect = (client: RedisHandle, timeoutMs: number): Effect.Effect<void, ServiceUnavailable | BackendError> =>
  Effect.tryPromise({ try: () => client.connect(), catch: classify }).pipe(
    Effect.timeoutFail({ duration: Math.max(timeoutMs, 1000), onTimeout: () => timedOut(timeoutMs, "connect") }),
    Effect.withClock(liveClock),
    Effect.withSpan("RedisClient.connect")
  )

/**
 * Acquires the client: creates and connects ours (closed with the scope; failing with
 * `ServiceUnavailable` when Redis cannot be reached within the bound, `BackendError` when it refuses the
 * connection, e.g. a wrong password, or when the URL or options cannot be used), or adopts the caller's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquireClient = (
  connection: RedisConnection,
  timeoutMs: number
): Effect.Effect<RedisHandle, ServiceUnavailable | BackendError, Scope.Scope> => {
  if (typeof connection === "object" && !Redacted.isRedacted(connection) && "client" in connection) {
    const client = connection.client
    const unsafe = client instanceof Cluster
      ? client.options.enableOfflineQueue !== false ||
        client.options.redisOptions?.autoResendUnfulfilledCommands !== false ||
        client.options.scaleReads !== "master"
      : client.options.autoResendUnfulfilledCommands !== false || client.options.enableOfflineQueue !== false
    return Effect.as(
      unsafe
        ? Effect.logWarning(
          "RedisBackend: the given ioredis client may resend or queue commands while disconnected; " +
            "a consuming check could then be applied after its call failed or timed out. " +
            "Create it with enableOfflineQueue: false, autoResendUnfulfilledCommands: false " +
            "(and, for a cluster, scaleReads: \"master\": a replica may lag, so it must never decide)."
        )
        : Effect.void,
      client
    )
  }
  return Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      newClient(connection, timeoutMs),
      (client) => closeClient(client, timeoutMs)
    )
    // Connection errors surface on each call as ServiceUnavailable; without a listener ioredis would
    // print every reconnect failure.
    client.on("error", () => {})
    yield* connect(client, timeoutMs)
    return client
  })
}

/**
 * One Redis connection, shared by everything that talks to Redis: the client, the vendored scripts (read
 * and checked once) and the script runner over the client.
 *
 * @since 0.2.0
 * @category models
 */
export interface SharedRedis {
  /** The ioredis client (ours, closed with the scope; or the caller's `{ client }`, left open). */
  readonly client: RedisHandle
  /** Put in front of every key we write (`"<keyPrefix>:"`, or `""` without a prefix). */
  readonly keyPrefix: string
  /** Every vendored script, by name and by strategy and role. */
  readonly scripts: ScriptCatalog
  /** The runner every call goes through (its bound is `runner.timeoutMs`). */
  readonly runner: ScriptRunner
}

/**
 * The shared Redis connection, as a service (provided by `RedisClient.layer`).
 *
 * @since 0.2.0
 * @category tags
 */
export class RedisClient extends Context.Tag("throttlekit-effect/RedisClient")<RedisClient, SharedRedis>() {}

/**
 * Options of the shared connection.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisClientOptions {
  /** Bound on every Redis call (and on connecting), in ms (default 1000). */
  readonly timeoutMs?: number | undefined
  /**
   * A deployment's namespace: every key becomes `<keyPrefix>:<key>` (as the ThrottleKit core's
   * `--redis-prefix`), so several deployments can share one Redis or cluster. No braces (a brace would
   * change which keys share a cluster slot); at most 256 bytes.
   */
  readonly keyPrefix?: string | undefined
  /**
   * After every consuming call, wait until this many replicas hold its write (Redis `WAIT`) before
   * answering; a call whose write is not acknowledged within the bound fails with `ServiceUnavailable`
   * (its units may be spent: the failure errs on the side of admitting less). Default 0: answer as soon as
   * the primary has applied it, which is faster, but a failover can then lose the last writes.
   */
  readonly replicaAcks?: number | undefined
}

/** The longest deployment prefix accepted, in UTF-8 bytes. */
const MAX_KEY_PREFIX_BYTES = 256

/**
 * `keyPrefix` as it goes in front of keys (`"x:"`, or `""`), or the reason it cannot be used.
 *
 * @since 0.3.0
 * @category utils
 */
export const keyPrefixOf = (keyPrefix: string | undefined): Effect.Effect<string, BackendError> => {
  if (keyPrefix === undefined || keyPrefix === "") return Effect.succeed("")
  if (/[{}]/.test(keyPrefix)) {
    return Effect.fail(unusableShape("the key prefix may not hold { or } (they choose a key's cluster slot)"))
  }
  if (Buffer.byteLength(keyPrefix, "utf8") > MAX_KEY_PREFIX_BYTES) {
    return Effect.fail(unusableShape(`the key prefix is longer than ${MAX_KEY_PREFIX_BYTES} bytes`))
  }
  return Effect.succeed(`${keyPrefix}:`)
}

const replicaAcksOf = (replicaAcks: number | undefined): Effect.Effect<number, BackendError> =>
  replicaAcks === undefined || (Number.isInteger(replicaAcks) && replicaAcks >= 0 && replicaAcks <= 16)
    ? Effect.succeed(replicaAcks ?? 0)
    : Effect.fail(unusableShape("replicaAcks must be a whole number from 0 to 16"))

/**
 * Opens the shared connection in the scope: reads the vendored scripts, then connects (or adopts the
 * caller's client). Fails with `ServiceUnavailable` when Redis cannot be reached within the bound,
 * `BackendError` when it refuses the connection or a vendored script is missing or altered.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = Effect.fn("RedisClient.make")(function*(
  connection: RedisConnection,
  options: RedisClientOptions = {}
): Effect.fn.Return<SharedRedis, ServiceUnavailable | BackendError, Scope.Scope> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const keyPrefix = yield* keyPrefixOf(options.keyPrefix)
  const replicaAcks = yield* replicaAcksOf(options.replicaAcks)
  const scripts = yield* loadScripts()
  const client = yield* acquireClient(connection, timeoutMs)
  const time = yield* RedisTime.make(client, timeoutMs)
  const runner = makeScriptRunner(client, timeoutMs, { time, replicaAcks })
  yield* Effect.addFinalizer(() => Effect.sync(runner.release))
  return { client, keyPrefix, scripts, runner }
})

/**
 * The shared connection as a layer: closed with the layer (a given `{ client }` is left open).
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  connection: RedisConnection,
  options: RedisClientOptions = {}
): Layer.Layer<RedisClient, ServiceUnavailable | BackendError> => Layer.scoped(RedisClient, make(connection, options))

/**
 * The shared connection as a layer, read from `Config`, e.g.
 * `RedisClient.layerConfig(Config.redacted("REDIS_URL"))`. A missing or invalid value fails the layer
 * with Effect's `ConfigError`; then it is built as `layer` builds it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  connection: Config.Config.Wrap<RedisConnection>,
  options: Config.Config.Wrap<RedisClientOptions> = {}
): Layer.Layer<RedisClient, EffectConfigError.ConfigError | ServiceUnavailable | BackendError> =>
  Layer.scoped(
    RedisClient,
    Effect.flatMap(
      Config.all([Config.unwrap(connection), Config.unwrap(options)]),
      ([connection, options]) => make(connection, options)
    )
  )
