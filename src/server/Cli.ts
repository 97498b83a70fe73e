/**
 * The command line of `throttlekit-effect`, parsed into typed options. Every mistake is a `UsageError`
 * with a one-line reason that never repeats a flag's value; nothing is read or bound while parsing
 * (`parse`). `load` then reads the secret files the command line names (`resolve`); a file that cannot
 * be used is a `SecretFileError` naming the flag (or variable) and the path, never the content.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { isLoopbackPeer } from "./Auth.js"
import { DEFAULT_FAIL_MODE, type FailMode, failModes } from "./FailMode.js"
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_PORT
} from "./GrpcServer.js"
import { DEFAULT_LENS_HOST } from "./lens/LensServer.js"
import { DEFAULT_METRICS_HOST } from "./metrics/MetricsServer.js"
import { DEFAULT_MAX_WATCH_STREAMS } from "./monitor/MonitorRpc.js"

/**
 * The usage text printed by `--help`.
 *
 * @since 0.1.0
 * @category constants
 */
export const usage = `usage: throttlekit-effect serve --config FILE [options]

Serves the policies in FILE (YAML or JSON) over gRPC (throttlekit.v1 + grpc.health.v1).
SIGHUP reloads FILE: validated whole first (a bad file changes nothing), then served from the next call
on; unchanged policies keep their state. One line per reload: applied, or refused with the reason.

options:
  -c, --config FILE          the policy file (required)
      --watch-config         also reload FILE when it changes on disk (changes within 250 ms count once)
      --host HOST            the interface to bind (default 127.0.0.1)
  -p, --port N               the port; 0 picks a free one (default ${DEFAULT_PORT})
      --store memory|redis   where limit state lives (default: redis when a Redis URL is given, else memory)
      --redis URL            the Redis server for --store redis (default redis://127.0.0.1:6379;
                             env THROTTLEKIT_REDIS_URL)
      --redis-file FILE      read the Redis URL from FILE (env THROTTLEKIT_REDIS_URL_FILE)
      --redis-cluster NODES  a Redis Cluster instead: seed nodes host:port,host:port,...
                             (env THROTTLEKIT_REDIS_CLUSTER)
      --redis-sentinel NODES a Sentinel-managed primary instead: the sentinels host:port,...
                             (env THROTTLEKIT_REDIS_SENTINEL)
      --redis-sentinel-name NAME  the primary's name at the sentinels (default mymaster)
      --redis-password P     the password of the cluster or sentinel-managed nodes (a URL carries
                             its own; env THROTTLEKIT_REDIS_PASSWORD)
      --redis-password-file FILE  read it from FILE (env THROTTLEKIT_REDIS_PASSWORD_FILE)
      --redis-prefix P       put P: in front of every Redis key, so deployments can share one Redis
      --redis-replica-acks N a consuming call answers once N replicas hold its write (Redis WAIT);
                             0 answers at once (default 0; see the README on failover)
      --fail open|closed     while the store is down, Check/CheckMany on limiter policies answer allowed
                             (open) or denied (closed) instead of UNAVAILABLE; other calls and other
                             errors are unchanged (default open); with insurance, only the checks it
                             does not decide (two-tier leases, fair escrows)
      --insurance-instances N  while Redis is unreachable, decide limiter checks and meter debits in
                             this process against 1/N of each limit (N servers share it), and go back
                             to Redis by itself once it answers; counted as
                             throttlekit_degraded_answers_total (needs --store redis)
      --insurance-share S    the same with a share S of each limit, 0 < S <= 1 (e.g. 0.25)
      --shadow               serve every policy in shadow mode: decide and record as usual, but answer
                             every denial allowed (counted as throttlekit_shadow_denied_total); a policy
                             can also say shadow: true in the file
      --monitor-secret S     secret for the Monitor door (env THROTTLEKIT_MONITOR_SECRET)
      --monitor-secret-file FILE  read it from FILE (env THROTTLEKIT_MONITOR_SECRET_FILE)
      --fleet-secret S       secret for the Fleet door (env THROTTLEKIT_FLEET_SECRET)
      --fleet-secret-file FILE    read it from FILE (env THROTTLEKIT_FLEET_SECRET_FILE)
      --admin-secret S       secret for the admin door (env THROTTLEKIT_ADMIN_SECRET); without one it
                             answers loopback callers only
      --admin-secret-file FILE    read it from FILE (env THROTTLEKIT_ADMIN_SECRET_FILE)
      --tls-cert FILE        PEM certificate chain; with --tls-key enables TLS
      --tls-key FILE         PEM private key
      --tls-ca FILE          PEM CA: clients must present a certificate it signed (mTLS)
      --tls-allow-not-yet-valid  start with a certificate that is not valid yet (a warning, not an error)
      --lease-ttl-ms N       admission lease TTL in ms (default 2000)
      --shutdown-timeout-ms N  how long in-flight calls may drain on shutdown (default 5000)
      --handshake-timeout-ms N  how long a new connection has to finish TLS and send the HTTP/2 preface
                             before it is closed (default ${DEFAULT_HANDSHAKE_TIMEOUT_MS})
      --idle-timeout-ms N    close a connection without a call for N ms (a GOAWAY: clients reconnect
                             on their next call); 0 never (default ${DEFAULT_IDLE_TIMEOUT_MS})
      --max-connections N    the most connections open at once; one more is closed as soon as it is
                             accepted (default ${DEFAULT_MAX_CONNECTIONS})
      --max-watch-streams N  the most Monitor Watch streams open at once; one more is answered
                             RESOURCE_EXHAUSTED; 0 refuses every Watch (default 100)
      --monitor on|off       serve the Monitor door (default on); off: its calls answer UNIMPLEMENTED
      --admin on|off         serve the admin door (reset, penalize, reward, block a key; default on);
                             off: its calls answer UNIMPLEMENTED
      --metrics-port N       serve Prometheus /metrics and /healthz over HTTP on port N (0: a free one);
                             not served unless given
      --metrics-host HOST    the interface of the metrics port (default 127.0.0.1; the page is aggregate,
                             without keys, and unauthenticated)
      --lens-port N          serve the Lens, a web page with the Monitor's picture (decisions per second,
                             top denied keys, guards, live denials), over HTTP on port N (0: a free one)
      --lens-host HOST       the interface of the Lens (default 127.0.0.1); another needs a Lens secret
      --lens-secret S        the Lens's secret: open /?token=S once in a browser (a cookie keeps it), or
                             send Authorization: Bearer S (env THROTTLEKIT_LENS_SECRET)
      --lens-secret-file FILE  read it from FILE (env THROTTLEKIT_LENS_SECRET_FILE)
      --region ID            this server's region: /metrics labels, and federated: / federatedFairEscrow:
                             policies that name none (env TK_REGION; default "default")
      --node-id ID           this server's id in /metrics and the Monitor snapshot (env TK_NODE_ID;
                             default HOST:PORT), and among the nodes of distributedConcurrency:
                             policies on Redis (default there HOSTNAME#PID); unique per process
  -V, --version              print the version
  -h, --help                 print this help

The secrets, the Redis URL and password (which may hold a password) can come from a file or the environment rather
than the command line, which any local user can read (ps). A file's content is used without one trailing
newline; an empty secret or file is an error. A flag wins over the environment; giving both the value and
the file form of one setting as flags, or both as variables, is an error. An empty variable counts as
unset; a Redis URL in the environment selects --store redis unless --store memory is given.
`

/**
 * A bad command line: the one-line reason.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/**
 * A file named for a secret or the Redis URL (`--monitor-secret-file`, `THROTTLEKIT_REDIS_URL_FILE`, ...)
 * could not be read, or does not hold a usable value. The message names the flag or variable and the
 * path, never the content.
 *
 * @since 0.2.0
 * @category errors
 */
export class SecretFileError extends Schema.TaggedError<SecretFileError>()("SecretFileError", {
  /** The flag or environment variable that named the file, e.g. `--monitor-secret-file`. */
  source: Schema.String,
  path: Schema.String,
  /** What is wrong, without the content. */
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.source} ${this.path}: ${this.reason}`
  }
}

/**
 * Which Redis, with its secrets of type `S` (`Redacted` once read, `SecretRef` as parsed): one server by
 * URL (`--redis`), a cluster by seed nodes (`--redis-cluster`), or a Sentinel-managed primary
 * (`--redis-sentinel`, `--redis-sentinel-name`).
 *
 * @since 0.3.0
 * @category models
 */
export type RedisTarget<S> =
  | { readonly _tag: "Url"; readonly url: S }
  | { readonly _tag: "Cluster"; readonly nodes: ReadonlyArray<string>; readonly password: Option.Option<S> }
  | {
    readonly _tag: "Sentinel"
    readonly nodes: ReadonlyArray<string>
    readonly name: string
    readonly password: Option.Option<S>
  }

/**
 * The Redis store's settings, with its secrets of type `S`.
 *
 * @since 0.3.0
 * @category models
 */
export interface RedisStore<S> {
  readonly kind: "redis"
  readonly target: RedisTarget<S>
  /** `--redis-prefix`. */
  readonly keyPrefix: Option.Option<string>
  /** `--redis-replica-acks`. */
  readonly replicaAcks: number
  /**
   * `--insurance-instances N` / `--insurance-share S`: while Redis is unreachable, decide limiter checks
   * and meter debits in this process against its share of each limit. Absent: no insurance.
   *
   * @since 0.3.0
   */
  readonly insurance?: { readonly instances: number } | { readonly share: number }
}

/**
 * The store holding limit state. The Redis URL and password are `Redacted`.
 *
 * @since 0.1.0
 * @category models
 */
export type Store = { readonly kind: "memory" } | RedisStore<Redacted.Redacted<string>>

/**
 * A secret (or the Redis URL) as the command line or the environment gives it: the value, or a file to
 * read it from (`resolve` reads it). `source` is the flag or variable it came from.
 *
 * @since 0.2.0
 * @category models
 */
export type SecretRef =
  | { readonly _tag: "Value"; readonly source: string; readonly value: Redacted.Redacted<string> }
  | { readonly _tag: "File"; readonly source: string; readonly path: string }

/**
 * The store as parsed: the Redis URL may still be a file to read.
 *
 * @since 0.2.0
 * @category models
 */
export type ParsedStore = { readonly kind: "memory" } | RedisStore<SecretRef>

/**
 * The paths of the TLS material.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsPaths {
  readonly cert: string
  readonly key: string
  readonly ca: Option.Option<string>
  /** Start with a certificate that is not valid yet (`--tls-allow-not-yet-valid`). */
  readonly allowNotYetValid: boolean
}

/**
 * Where the Lens is served (`--lens-port`, `--lens-host`) and its secret of type `S` (`--lens-secret`,
 * `--lens-secret-file`; `Redacted` once read, `SecretRef` as parsed; none: loopback only).
 *
 * @since 0.3.0
 * @category models
 */
export interface LensArgs<S> {
  readonly host: string
  readonly port: number
  readonly secret: Option.Option<S>
}

/**
 * The options of `serve`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeArgs {
  readonly config: string
  /**
   * Reload the config when its file changes (`--watch-config`), besides on SIGHUP.
   *
   * @since 0.3.0
   */
  readonly watchConfig: boolean
  readonly host: string
  readonly port: number
  readonly store: Store
  /** How limiter checks answer while the store is down (`--fail`). */
  readonly failMode: FailMode
  readonly monitorSecret: Option.Option<Redacted.Redacted<string>>
  readonly fleetSecret: Option.Option<Redacted.Redacted<string>>
  /** The admin door's secret (`--admin-secret`; since 0.3.0). */
  readonly adminSecret: Option.Option<Redacted.Redacted<string>>
  readonly tls: Option.Option<TlsPaths>
  readonly leaseTtlMs: number
  readonly shutdownTimeoutMs: number
  /** `--handshake-timeout-ms`. */
  readonly handshakeTimeoutMs: number
  /** `--idle-timeout-ms` (0: never). */
  readonly idleTimeoutMs: number
  /** `--max-connections`. */
  readonly maxConnections: number
  /** The most Monitor Watch streams open at once (`--max-watch-streams`). */
  readonly maxWatchStreams: number
  /** Serve the Monitor door (`--monitor on|off`). */
  readonly monitor: boolean
  /** Serve the admin door (`--admin on|off`; since 0.3.0). */
  readonly admin: boolean
  /** Where `/metrics` and `/healthz` are served (`--metrics-port`, `--metrics-host`); none: not served. */
  readonly metrics: Option.Option<{ readonly host: string; readonly port: number }>
  /** Where the Lens is served, with its secret; none: not served. */
  readonly lens: Option.Option<LensArgs<Redacted.Redacted<string>>>
  /** This server's region (`--region`, `TK_REGION`; default "default"). */
  readonly region: string
  /** This server's node id (`--node-id`, `TK_NODE_ID`); none: the server's `host:port`. */
  readonly nodeId: Option.Option<string>
  /** Serve every policy in shadow mode (`--shadow`); absent: each policy's own `shadow`. @since 0.3.0 */
  readonly shadow?: boolean
}

/**
 * The options of `serve` as parsed, before `resolve` reads the files they name: `ServeArgs` with the
 * secrets and the Redis URL as `SecretRef`s.
 *
 * @since 0.2.0
 * @category models
 */
export interface ParsedServeArgs
  extends Omit<ServeArgs, "store" | "monitorSecret" | "fleetSecret" | "adminSecret" | "lens">
{
  readonly store: ParsedStore
  readonly monitorSecret: Option.Option<SecretRef>
  readonly fleetSecret: Option.Option<SecretRef>
  readonly adminSecret: Option.Option<SecretRef>
  readonly lens: Option.Option<LensArgs<SecretRef>>
}

/**
 * What the command line asks for, with every secret read (see `load`).
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | { readonly _tag: "Help" }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Serve"; readonly args: ServeArgs }

/**
 * What the command line asks for, as parsed (see `parse`): the secret files are not read yet.
 *
 * @since 0.2.0
 * @category models
 */
export type ParsedCommand =
  | { readonly _tag: "Help" }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Serve"; readonly args: ParsedServeArgs }

/**
 * The package version could not be read (no readable `package.json` of this package above the module).
 *
 * @since 0.1.0
 * @category errors
 */
export class VersionError extends Schema.TaggedError<VersionError>()("VersionError", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

const PACKAGE_NAME = "throttlekit-effect"

const PackageJson = Schema.parseJson(Schema.Struct({ name: Schema.String, version: Schema.String }))
const decodePackageJson = Schema.decodeUnknownOption(PackageJson)

/**
 * The version in this package's `package.json`, found by walking up from this module's directory (so it
 * works from `src/server/` under tsx, from a built `dist/src/server/`, and from an installed copy).
 *
 * @since 0.1.0
 * @category constants
 */
export const version: Effect.Effect<string, VersionError, FileSystem.FileSystem | Path.Path> = Effect.gen(
  function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const here = yield* path.fromFileUrl(new URL(import.meta.url)).pipe(
      Effect.mapError((error) => new VersionError({ reason: `cannot locate package.json: ${error.message}` }))
    )
    let dir = path.dirname(here)
    for (;;) {
      const candidate = path.join(dir, "package.json")
      const text = yield* fs.readFileString(candidate).pipe(Effect.option)
      const found = Option.flatMap(text, decodePackageJson)
      if (Option.isSome(found) && found.value.name === PACKAGE_NAME) return found.value.version
      const parent = path.dirname(dir)
      if (parent === dir) {
        return yield* new VersionError({ reason: `cannot find the package.json of ${PACKAGE_NAME} above ${here}` })
      }
      dir = parent
    }
  }
)

/**
 * The default Redis URL.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

/**
 * The primary's name at the sentinels when `--redis-sentinel-name` is not given (Redis's own example name).
 *
 * @since 0.3.0
 * @category constants
 */
export const DEFAULT_SENTINEL_NAME = "mymaster"

const valueFlags: Record<string, string> = {
  "-c": "config",
  "--config": "config",
  "--host": "host",
  "-p": "port",
  "--port": "port",
  "--store": "store",
  "--redis": "redis",
  "--redis-file": "redis-file",
  "--redis-cluster": "redis-cluster",
  "--redis-sentinel": "redis-sentinel",
  "--redis-sentinel-name": "redis-sentinel-name",
  "--redis-password": "redis-password",
  "--redis-password-file": "redis-password-file",
  "--redis-prefix": "redis-prefix",
  "--redis-replica-acks": "redis-replica-acks",
  "--insurance-instances": "insurance-instances",
  "--insurance-share": "insurance-share",
  "--fail": "fail",
  "--monitor-secret": "monitor-secret",
  "--monitor-secret-file": "monitor-secret-file",
  "--fleet-secret": "fleet-secret",
  "--fleet-secret-file": "fleet-secret-file",
  "--admin-secret": "admin-secret",
  "--admin-secret-file": "admin-secret-file",
  "--tls-cert": "tls-cert",
  "--tls-key": "tls-key",
  "--tls-ca": "tls-ca",
  "--lease-ttl-ms": "lease-ttl-ms",
  "--shutdown-timeout-ms": "shutdown-timeout-ms",
  "--handshake-timeout-ms": "handshake-timeout-ms",
  "--idle-timeout-ms": "idle-timeout-ms",
  "--max-connections": "max-connections",
  "--max-watch-streams": "max-watch-streams",
  // The operator surface: the Monitor switch, /metrics, and the server's identity (see `operatorFlags`).
  "--monitor": "monitor",
  "--admin": "admin",
  "--metrics-port": "metrics-port",
  "--metrics-host": "metrics-host",
  "--lens-port": "lens-port",
  "--lens-host": "lens-host",
  "--lens-secret": "lens-secret",
  "--lens-secret-file": "lens-secret-file",
  "--region": "region",
  "--node-id": "node-id"
}

/** Flags that take no value. */
const switchFlags: Record<string, string> = {
  "--tls-allow-not-yet-valid": "tls-allow-not-yet-valid",
  "--watch-config": "watch-config",
  "--shadow": "shadow"
}

/** A flag's name without any `=value` (which may be a secret), for error messages. */
const flagName = (arg: string): string => arg.startsWith("-") ? arg.split("=", 1)[0]! : arg

const fail = (reason: string) => Effect.fail(new UsageError({ reason }))

const wholeNumber = (
  flag: string,
  text: string,
  min: number,
  max: number
): Effect.Effect<number, UsageError> =>
  /^\d+$/.test(text) && Number(text) >= min && Number(text) <= max
    ? Effect.succeed(Number(text))
    : fail(`--${flag} must be a whole number from ${min} to ${max}`)

/**
 * One setting from one level (the flags, or the environment): its value form, its file form, or neither;
 * both is a mistake.
 */
const valueOrFile = (
  value: string | undefined,
  file: string | undefined,
  valueSource: string,
  fileSource: string,
  both: string
): Effect.Effect<Option.Option<SecretRef>, UsageError> => {
  if (value !== undefined && file !== undefined) return fail(`${valueSource} and ${fileSource} ${both}; use one`)
  if (value !== undefined) {
    return Effect.succeed(Option.some({ _tag: "Value", source: valueSource, value: Redacted.make(value) }))
  }
  if (file !== undefined) return Effect.succeed(Option.some({ _tag: "File", source: fileSource, path: file }))
  return Effect.succeedNone
}

/** An empty variable counts as unset. */
const setVariable = (text: string | undefined): string | undefined => text === "" ? undefined : text

/**
 * A setting with a value and a file form (`--monitor-secret S`, `--monitor-secret-file F`, and the
 * variables `THROTTLEKIT_MONITOR_SECRET`, `THROTTLEKIT_MONITOR_SECRET_FILE`): from the flags if either
 * form is given there, else from the environment. An empty flag value is a mistake.
 */
const setting = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>,
  flag: string,
  variable: string
): Effect.Effect<Option.Option<SecretRef>, UsageError> =>
  Effect.gen(function*() {
    const fileFlag = `${flag}-file`
    for (const name of [flag, fileFlag]) {
      if (values.get(name) === "") return yield* fail(`--${name} must not be empty`)
    }
    const fromFlags = yield* valueOrFile(
      values.get(flag),
      values.get(fileFlag),
      `--${flag}`,
      `--${fileFlag}`,
      "were both given"
    )
    if (Option.isSome(fromFlags)) return fromFlags
    const fileVariable = `${variable}_FILE`
    return yield* valueOrFile(
      setVariable(env[variable]),
      setVariable(env[fileVariable]),
      variable,
      fileVariable,
      "are both set"
    )
  })

/** The longest `--region` / `--node-id`, in characters. */
const MAX_ID_LENGTH = 256

/**
 * An identity (`--region`, `--node-id`): from the flag, else the variable (empty counts as unset); 1 to
 * 256 characters, none of them a control character (it is printed and sent as a label).
 */
const identity = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>,
  flag: string,
  variable: string
): Effect.Effect<Option.Option<string>, UsageError> => {
  const fromFlag = values.get(flag)
  const text = fromFlag ?? setVariable(env[variable])
  if (text === undefined) return Effect.succeedNone
  const source = fromFlag === undefined ? variable : `--${flag}`
  // eslint-disable-next-line no-control-regex
  return text.length === 0 || text.length > MAX_ID_LENGTH || /[\u0000-\u001f\u007f]/.test(text)
    ? fail(`${source} must be 1 to ${MAX_ID_LENGTH} characters, none a control character`)
    : Effect.succeed(Option.some(text))
}

/**
 * `--monitor`, `--admin`, `--metrics-port`, `--metrics-host`, `--region`, `--node-id` (with `TK_REGION`,
 * `TK_NODE_ID`).
 */
const operatorFlags = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<Pick<ServeArgs, "monitor" | "admin" | "metrics" | "region" | "nodeId">, UsageError> =>
  Effect.gen(function*() {
    const monitorText = values.get("monitor") ?? "on"
    if (monitorText !== "on" && monitorText !== "off") return yield* fail("--monitor must be on or off")
    const adminText = values.get("admin") ?? "on"
    if (adminText !== "on" && adminText !== "off") return yield* fail("--admin must be on or off")
    const portText = values.get("metrics-port")
    const host = values.get("metrics-host")
    if (host === "") return yield* fail("--metrics-host must not be empty")
    if (portText === undefined && host !== undefined) return yield* fail("--metrics-host needs --metrics-port")
    const metrics = portText === undefined ? Option.none() : Option.some({
      host: host ?? DEFAULT_METRICS_HOST,
      port: yield* wholeNumber("metrics-port", portText, 0, 65535)
    })
    const region = yield* identity(values, env, "region", "TK_REGION")
    const nodeId = yield* identity(values, env, "node-id", "TK_NODE_ID")
    return {
      monitor: monitorText === "on",
      admin: adminText === "on",
      metrics,
      region: Option.getOrElse(region, () => "default"),
      nodeId
    }
  })

/**
 * `--lens-port`, `--lens-host`, `--lens-secret[-file]` (with `THROTTLEKIT_LENS_SECRET[_FILE]`). A host that
 * is not loopback needs a secret (the page shows keys); a secret flag without `--lens-port` is a mistake (a
 * secret in the environment alone is ignored then).
 */
const lensFlags = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<Option.Option<LensArgs<SecretRef>>, UsageError> =>
  Effect.gen(function*() {
    const portText = values.get("lens-port")
    const host = values.get("lens-host")
    if (host === "") return yield* fail("--lens-host must not be empty")
    const secret = yield* setting(values, env, "lens-secret", "THROTTLEKIT_LENS_SECRET")
    if (portText === undefined) {
      if (host !== undefined) return yield* fail("--lens-host needs --lens-port")
      const flag = ["lens-secret", "lens-secret-file"].find((name) => values.has(name))
      if (flag !== undefined) return yield* fail(`--${flag} needs --lens-port`)
      return Option.none()
    }
    const port = yield* wholeNumber("lens-port", portText, 0, 65535)
    const lensHost = host ?? DEFAULT_LENS_HOST
    if (Option.isNone(secret) && !isLoopbackPeer(lensHost)) {
      return yield* fail(
        "--lens-host is not a loopback address: give --lens-secret or --lens-secret-file too (the page shows keys)"
      )
    }
    return Option.some({ host: lensHost, port, secret })
  })

const REDIS_URL = "a redis:// or rediss:// URL"
const NOT_SHOWN = "not shown: it may hold a password"

/** What is wrong with a Redis URL, without repeating it (it may hold a password); none when it is usable. */
const redisUrlProblem = (url: string): Option.Option<string> =>
  /^rediss?:\/\//.test(url)
    ? Option.none()
    : Option.some(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url) ? "has another scheme" : "does not start with a scheme://")

/** One trailing newline (`\n` or `\r\n`) removed, as secret files usually end with one. */
const withoutTrailingNewline = (text: string): string =>
  text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text

/** Why a file could not be read: the system's reason and description (a path, never bytes of the file). */
const readFailure = (error: PlatformError): string => {
  const detail = error.description ?? `${error.module}.${error.method}`
  return error._tag === "SystemError" ? `${error.reason}: ${detail}` : detail
}

/** The Redis URL file's check: its content must be a redis:// or rediss:// URL. */
const redisUrlInFile = (url: string): Option.Option<string> =>
  Option.map(
    redisUrlProblem(url),
    (problem) => `the file must hold ${REDIS_URL}, but its content ${problem} (${NOT_SHOWN})`
  )

/** The largest secret (or Redis URL) file read: 64 KiB. */
const MAX_SECRET_FILE_BYTES = 65_536

/**
 * The value a `SecretRef` stands for: the given value, or the file's content without one trailing
 * newline. An unreadable file, an empty value, or one `check` refuses, is a `SecretFileError`.
 */
const readRef = (
  ref: SecretRef,
  check: (value: string) => Option.Option<string> = () => Option.none()
): Effect.Effect<Redacted.Redacted<string>, SecretFileError, FileSystem.FileSystem> => {
  if (ref._tag === "Value") return Effect.succeed(ref.value)
  const problem = (reason: string) => new SecretFileError({ source: ref.source, path: ref.path, reason })
  return Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const unreadable = (error: PlatformError) => problem(`cannot read the file (${readFailure(error)})`)
    // A secret is a small regular file: a device (`/dev/zero`), a pipe or a huge file is refused before
    // reading, so the read is bounded.
    const info = yield* fs.stat(ref.path).pipe(Effect.mapError(unreadable))
    if (info.type !== "File") return yield* problem("it is not a regular file")
    if (info.size > MAX_SECRET_FILE_BYTES) return yield* problem(`the file is over ${MAX_SECRET_FILE_BYTES} bytes`)
    const text = yield* fs.readFileString(ref.path).pipe(Effect.mapError(unreadable))
    const value = withoutTrailingNewline(text)
    if (value === "") return yield* problem(text === "" ? "the file is empty" : "the file holds only a newline")
    const wrong = check(value)
    if (Option.isSome(wrong)) return yield* problem(wrong.value)
    return Redacted.make(value)
  })
}

const readOptionalRef = (ref: Option.Option<SecretRef>) => Effect.transposeMapOption(ref, (r) => readRef(r))

/** The Redis target with its URL or password read. */
const readTarget = (
  target: RedisTarget<SecretRef>
): Effect.Effect<RedisTarget<Redacted.Redacted<string>>, SecretFileError, FileSystem.FileSystem> =>
  target._tag === "Url"
    ? Effect.map(readRef(target.url, redisUrlInFile), (url) => ({ _tag: "Url", url }) as const)
    : Effect.map(readOptionalRef(target.password), (password) => ({ ...target, password }))

/** `host:port,host:port,…` as a list, or why not (addresses hold no secret, so they may be named). */
const nodeList = (flag: string, text: string): Effect.Effect<ReadonlyArray<string>, UsageError> => {
  const nodes = text.split(",").map((node) => node.trim())
  for (const node of nodes) {
    const colon = node.lastIndexOf(":")
    const port = Number(node.slice(colon + 1))
    if (colon <= 0 || !/^\d+$/.test(node.slice(colon + 1)) || port < 1 || port > 65535) {
      return fail(`${flag} must be a list of host:port separated by commas; ${JSON.stringify(node)} is not one`)
    }
  }
  return Effect.succeed(nodes)
}

/** A plain (not secret) setting from its flag, else its variable (an empty variable counts as unset). */
const plainSetting = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>,
  flag: string,
  variable: string
): { readonly source: string; readonly text: string } | undefined => {
  const fromFlag = values.get(flag)
  if (fromFlag !== undefined) return { source: `--${flag}`, text: fromFlag }
  const fromEnv = setVariable(env[variable])
  return fromEnv === undefined ? undefined : { source: variable, text: fromEnv }
}

/**
 * The store: memory, or Redis by URL, cluster or sentinels. Naming a Redis (flag or environment) selects
 * Redis unless `--store memory` is given; naming two kinds of Redis is a mistake.
 */
const parseStore = (
  values: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<ParsedStore, UsageError> =>
  Effect.gen(function*() {
    const url = yield* setting(values, env, "redis", "THROTTLEKIT_REDIS_URL")
    const cluster = plainSetting(values, env, "redis-cluster", "THROTTLEKIT_REDIS_CLUSTER")
    const sentinel = plainSetting(values, env, "redis-sentinel", "THROTTLEKIT_REDIS_SENTINEL")
    const password = yield* setting(values, env, "redis-password", "THROTTLEKIT_REDIS_PASSWORD")
    const named = [
      ...(Option.isSome(url) ? [url.value.source] : []),
      ...(cluster === undefined ? [] : [cluster.source]),
      ...(sentinel === undefined ? [] : [sentinel.source])
    ]
    const redisOnly = ["redis-sentinel-name", "redis-prefix", "redis-replica-acks", ...INSURANCE_FLAGS]
      .filter((flag) => values.has(flag))
      .map((flag) => `--${flag}`)
    const storeName = values.get("store") ?? (named.length > 0 ? "redis" : "memory")
    if (storeName === "memory") {
      // A Redis flag contradicts --store memory; a Redis in the environment yields to it (flags win).
      const given = [...named, ...(Option.isSome(password) ? [password.value.source] : []), ...redisOnly]
        .find((source) => source.startsWith("--"))
      if (given !== undefined) return yield* fail(`${given} needs --store redis (it was given with --store memory)`)
      return { kind: "memory" } as const
    }
    if (storeName !== "redis") return yield* fail("--store must be memory or redis")
    if (named.length > 1) return yield* fail(`${named[0]} and ${named[1]} name two different Redis; give one`)

    let target: RedisTarget<SecretRef>
    if (cluster !== undefined) {
      target = { _tag: "Cluster", nodes: yield* nodeList(cluster.source, cluster.text), password }
    } else if (sentinel !== undefined) {
      const name = values.get("redis-sentinel-name") ?? DEFAULT_SENTINEL_NAME
      if (name === "") return yield* fail("--redis-sentinel-name must not be empty")
      target = { _tag: "Sentinel", nodes: yield* nodeList(sentinel.source, sentinel.text), name, password }
    } else {
      if (Option.isSome(password)) {
        return yield* fail(
          `${password.value.source} is for --redis-cluster or --redis-sentinel; a Redis URL carries its own password`
        )
      }
      const ref = Option.getOrElse(
        url,
        (): SecretRef => ({ _tag: "Value", source: "--redis", value: Redacted.make(DEFAULT_REDIS_URL) })
      )
      // A URL from a file is checked once read (`resolve`).
      const problem = ref._tag === "Value" ? redisUrlProblem(Redacted.value(ref.value)) : Option.none()
      if (Option.isSome(problem)) {
        return yield* fail(`${ref.source} must be ${REDIS_URL}, but the value ${problem.value} (${NOT_SHOWN})`)
      }
      target = { _tag: "Url", url: ref }
    }
    if (values.has("redis-sentinel-name") && target._tag !== "Sentinel") {
      return yield* fail("--redis-sentinel-name needs --redis-sentinel")
    }

    const keyPrefix = values.get("redis-prefix")
    if (keyPrefix === "") return yield* fail("--redis-prefix must not be empty")
    if (keyPrefix !== undefined && /[{}]/.test(keyPrefix)) {
      return yield* fail("--redis-prefix may not hold { or } (they choose a key's cluster slot)")
    }
    if (keyPrefix !== undefined && Buffer.byteLength(keyPrefix, "utf8") > 256) {
      return yield* fail("--redis-prefix must be at most 256 bytes")
    }
    const replicaAcks = yield* wholeNumber("redis-replica-acks", values.get("redis-replica-acks") ?? "0", 0, 16)
    const insurance = yield* insuranceFlags(values)
    return {
      kind: "redis",
      target,
      keyPrefix: Option.fromNullable(keyPrefix),
      replicaAcks,
      ...(insurance === undefined ? {} : { insurance })
    } as const
  })

const INSURANCE_FLAGS = ["insurance-instances", "insurance-share"]

/** `--insurance-instances N` (1 to 10 000) or `--insurance-share S` (in (0, 1]), at most one; neither: none. */
const insuranceFlags = (
  values: ReadonlyMap<string, string>
): Effect.Effect<RedisStore<never>["insurance"], UsageError> =>
  Effect.gen(function*() {
    const instances = values.get("insurance-instances")
    const share = values.get("insurance-share")
    if (instances !== undefined && share !== undefined) {
      return yield* fail("--insurance-instances and --insurance-share both size the local share; give one")
    }
    if (instances !== undefined) return { instances: yield* wholeNumber("insurance-instances", instances, 1, 10_000) }
    if (share === undefined) return undefined
    const fraction = /^(?:0|1)?(?:\.\d+)?$/.test(share) && share !== "" && share !== "." ? Number(share) : Number.NaN
    return fraction > 0 && fraction <= 1
      ? { share: fraction }
      : yield* fail("--insurance-share must be a number greater than 0 and at most 1 (e.g. 0.25)")
  })

/**
 * Parses the arguments after the program name, reading nothing: a secret or Redis URL given as a file
 * stays a `SecretRef` for `resolve`. `env` supplies the environment fallbacks of the secrets and the
 * Redis URL (`THROTTLEKIT_MONITOR_SECRET[_FILE]`, `THROTTLEKIT_FLEET_SECRET[_FILE]`,
 * `THROTTLEKIT_REDIS_URL[_FILE]`); a flag wins over them.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>> = {}
): Effect.Effect<ParsedCommand, UsageError> =>
  Effect.gen(function*() {
    if (argv.length === 0) return yield* fail("missing command: expected \"serve\" (see --help)")
    const [command, ...rest] = argv
    if (command === "-h" || command === "--help") return { _tag: "Help" } as const
    if (command === "-V" || command === "--version") return { _tag: "Version" } as const
    if (command !== "serve") {
      return yield* fail(`unknown command: ${JSON.stringify(flagName(command ?? ""))} (expected "serve")`)
    }

    const values = new Map<string, string>()
    const switches = new Set<string>()
    for (let i = 0; i < rest.length; i++) {
      const arg = rest[i]!
      if (arg === "-h" || arg === "--help") return { _tag: "Help" } as const
      if (arg === "-V" || arg === "--version") return { _tag: "Version" } as const
      const eq = arg.startsWith("--") ? arg.indexOf("=") : -1
      const flag = eq > 0 ? arg.slice(0, eq) : arg
      const switchName = switchFlags[flag]
      if (switchName !== undefined) {
        if (eq > 0) return yield* fail(`${flag} takes no value`)
        if (switches.has(switchName)) return yield* fail(`${flag} given more than once`)
        switches.add(switchName)
        continue
      }
      const name = valueFlags[flag]
      if (name === undefined) {
        // Never echo a value: it may be a secret (`--monitor-secrets=…`, or a secret one flag too far).
        return yield* fail(
          arg.startsWith("-")
            ? `unknown argument: ${flagName(arg)}`
            : `unexpected value at argument ${i + 2} (every value follows its flag, e.g. --port 8080)`
        )
      }
      let value: string
      if (eq > 0) {
        value = arg.slice(eq + 1)
      } else {
        const next = rest[i + 1]
        if (next === undefined) return yield* fail(`${flag} needs a value`)
        value = next
        i++
      }
      if (values.has(name)) return yield* fail(`--${name} given more than once`)
      values.set(name, value)
    }

    const config = values.get("config")
    if (config === undefined || config === "") return yield* fail("--config is required")
    const host = values.get("host") ?? "127.0.0.1"
    if (host === "") return yield* fail("--host must not be empty")
    const port = yield* wholeNumber("port", values.get("port") ?? String(DEFAULT_PORT), 0, 65535)

    const store = yield* parseStore(values, env)

    const failText = values.get("fail") ?? DEFAULT_FAIL_MODE
    const failMode = failModes.find((mode) => mode === failText)
    if (failMode === undefined) return yield* fail("--fail must be open or closed")

    const cert = values.get("tls-cert")
    const key = values.get("tls-key")
    const ca = values.get("tls-ca")
    const allowNotYetValid = switches.has("tls-allow-not-yet-valid")
    let tls: Option.Option<TlsPaths> = Option.none()
    if (cert !== undefined || key !== undefined || ca !== undefined) {
      if (cert === undefined || key === undefined) {
        return yield* fail("TLS needs both --tls-cert and --tls-key (--tls-ca alone does not enable TLS)")
      }
      tls = Option.some({ cert, key, ca: Option.fromNullable(ca), allowNotYetValid })
    } else if (allowNotYetValid) {
      return yield* fail("--tls-allow-not-yet-valid needs --tls-cert and --tls-key")
    }

    const monitorSecret = yield* setting(values, env, "monitor-secret", "THROTTLEKIT_MONITOR_SECRET")
    const fleetSecret = yield* setting(values, env, "fleet-secret", "THROTTLEKIT_FLEET_SECRET")
    const adminSecret = yield* setting(values, env, "admin-secret", "THROTTLEKIT_ADMIN_SECRET")

    /** A whole-number flag, or its default when not given. */
    const numberFlag = (flag: string, fallback: number, min: number, max: number) =>
      wholeNumber(flag, values.get(flag) ?? String(fallback), min, max)
    const leaseTtlMs = yield* numberFlag("lease-ttl-ms", 2000, 1, 86_400_000)
    const shutdownTimeoutMs = yield* numberFlag("shutdown-timeout-ms", 5000, 0, 3_600_000)
    const handshakeTimeoutMs = yield* numberFlag("handshake-timeout-ms", DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, 600_000)
    const idleTimeoutMs = yield* numberFlag("idle-timeout-ms", DEFAULT_IDLE_TIMEOUT_MS, 0, 86_400_000)
    const maxConnections = yield* numberFlag("max-connections", DEFAULT_MAX_CONNECTIONS, 1, 1_000_000)
    const maxWatchStreams = yield* numberFlag("max-watch-streams", DEFAULT_MAX_WATCH_STREAMS, 0, 1_000_000)
    const operator = yield* operatorFlags(values, env)
    const lens = yield* lensFlags(values, env)

    return {
      _tag: "Serve",
      args: {
        config,
        watchConfig: switches.has("watch-config"),
        host,
        port,
        store,
        failMode,
        monitorSecret,
        fleetSecret,
        adminSecret,
        tls,
        leaseTtlMs,
        shutdownTimeoutMs,
        handshakeTimeoutMs,
        idleTimeoutMs,
        maxConnections,
        maxWatchStreams,
        ...operator,
        lens,
        ...(switches.has("shadow") ? { shadow: true } : {})
      }
    } as const
  })

/**
 * Reads the files a parsed command names: each secret file and the Redis URL file, without one trailing
 * newline. A file that cannot be read, is empty, or (for the Redis URL) does not hold a redis:// or
 * rediss:// URL is a `SecretFileError` naming the flag or variable and the path, never the content.
 *
 * @since 0.2.0
 * @category parsing
 */
export const resolve = (
  command: ParsedCommand
): Effect.Effect<Command, SecretFileError, FileSystem.FileSystem> => {
  if (command._tag !== "Serve") return Effect.succeed(command)
  const { adminSecret, fleetSecret, lens, monitorSecret, store, ...rest } = command.args
  return Effect.gen(function*() {
    const args: ServeArgs = {
      ...rest,
      store: store.kind === "memory" ? store : { ...store, target: yield* readTarget(store.target) },
      monitorSecret: yield* readOptionalRef(monitorSecret),
      fleetSecret: yield* readOptionalRef(fleetSecret),
      lens: yield* Effect.transposeMapOption(
        lens,
        (l) => Effect.map(readOptionalRef(l.secret), (secret) => ({ ...l, secret }))
      ),
      adminSecret: yield* readOptionalRef(adminSecret)
    }
    return { _tag: "Serve", args } as const
  })
}

/**
 * `parse`, then `resolve`: the command line with every secret file read.
 *
 * @since 0.2.0
 * @category parsing
 */
export const load = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>> = {}
): Effect.Effect<Command, UsageError | SecretFileError, FileSystem.FileSystem> =>
  Effect.flatMap(parse(argv, env), resolve)
