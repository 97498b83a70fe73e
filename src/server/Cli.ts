/**
 * The command line of `throttlekit-effect`, parsed into typed options. Every mistake is a `UsageError`
 * with a one-line reason; nothing is read or bound while parsing.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { DEFAULT_FAIL_MODE, type FailMode, failModes } from "./FailMode.js"
import { DEFAULT_PORT } from "./GrpcServer.js"

/**
 * The usage text printed by `--help`.
 *
 * @since 0.1.0
 * @category constants
 */
export const usage = `usage: throttlekit-effect serve --config FILE [options]

Serves the policies in FILE (YAML or JSON) over gRPC (throttlekit.v1 + grpc.health.v1).

options:
  -c, --config FILE          the policy file (required)
      --host HOST            the interface to bind (default 127.0.0.1)
  -p, --port N               the port; 0 picks a free one (default ${DEFAULT_PORT})
      --store memory|redis   where limit state lives (default: redis when --redis is given, else memory)
      --redis URL            the Redis server for --store redis (default redis://127.0.0.1:6379)
      --fail open|closed     while the store is down, Check/CheckMany on limiter policies answer allowed
                             (open) or denied (closed) instead of UNAVAILABLE; other calls and other
                             errors are unchanged (default open)
      --monitor-secret S     secret for the Monitor door (env THROTTLEKIT_MONITOR_SECRET)
      --fleet-secret S       secret for the Fleet door (env THROTTLEKIT_FLEET_SECRET)
      --tls-cert FILE        PEM certificate chain; with --tls-key enables TLS
      --tls-key FILE         PEM private key
      --tls-ca FILE          PEM CA: clients must present a certificate it signed (mTLS)
      --lease-ttl-ms N       admission lease TTL in ms (default 2000)
      --shutdown-timeout-ms N  how long in-flight calls may drain on shutdown (default 5000)
  -V, --version              print the version
  -h, --help                 print this help
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
 * The store holding limit state.
 *
 * @since 0.1.0
 * @category models
 */
export type Store = { readonly kind: "memory" } | { readonly kind: "redis"; readonly url: string }

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
}

/**
 * The options of `serve`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeArgs {
  readonly config: string
  readonly host: string
  readonly port: number
  readonly store: Store
  /** How limiter checks answer while the store is down (`--fail`). */
  readonly failMode: FailMode
  readonly monitorSecret: Option.Option<Redacted.Redacted<string>>
  readonly fleetSecret: Option.Option<Redacted.Redacted<string>>
  readonly tls: Option.Option<TlsPaths>
  readonly leaseTtlMs: number
  readonly shutdownTimeoutMs: number
}

/**
 * What the command line asks for.
 *
 * @since 0.1.0
 * @category models
 */
export type Command =
  | { readonly _tag: "Help" }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Serve"; readonly args: ServeArgs }

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

const valueFlags: Record<string, string> = {
  "-c": "config",
  "--config": "config",
  "--host": "host",
  "-p": "port",
  "--port": "port",
  "--store": "store",
  "--redis": "redis",
  "--fail": "fail",
  "--monitor-secret": "monitor-secret",
  "--fleet-secret": "fleet-secret",
  "--tls-cert": "tls-cert",
  "--tls-key": "tls-key",
  "--tls-ca": "tls-ca",
  "--lease-ttl-ms": "lease-ttl-ms",
  "--shutdown-timeout-ms": "shutdown-timeout-ms"
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
    : fail(`--${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`)

/**
 * Parses the arguments after the program name. `env` supplies the secrets' environment fallbacks.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>> = {}
): Effect.Effect<Command, UsageError> =>
  Effect.gen(function*() {
    if (argv.length === 0) return yield* fail("missing command: expected \"serve\" (see --help)")
    const [command, ...rest] = argv
    if (command === "-h" || command === "--help") return { _tag: "Help" } as const
    if (command === "-V" || command === "--version") return { _tag: "Version" } as const
    if (command !== "serve") {
      return yield* fail(`unknown command: ${JSON.stringify(flagName(command ?? ""))} (expected "serve")`)
    }

    const values = new Map<string, string>()
    for (let i = 0; i < rest.length; i++) {
      const arg = rest[i]!
      if (arg === "-h" || arg === "--help") return { _tag: "Help" } as const
      if (arg === "-V" || arg === "--version") return { _tag: "Version" } as const
      const eq = arg.startsWith("--") ? arg.indexOf("=") : -1
      const flag = eq > 0 ? arg.slice(0, eq) : arg
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

    const storeName = values.get("store") ?? (values.has("redis") ? "redis" : "memory")
    const redisUrl = values.get("redis")
    let store: Store
    if (storeName === "memory") {
      if (redisUrl !== undefined) return yield* fail("--redis needs --store redis (it was given with --store memory)")
      store = { kind: "memory" }
    } else if (storeName === "redis") {
      const url = redisUrl ?? DEFAULT_REDIS_URL
      if (!/^rediss?:\/\//.test(url)) {
        return yield* fail(`--redis must be a redis:// or rediss:// URL, got ${JSON.stringify(url)}`)
      }
      store = { kind: "redis", url }
    } else {
      return yield* fail(`--store must be memory or redis, got ${JSON.stringify(storeName)}`)
    }

    const failText = values.get("fail") ?? DEFAULT_FAIL_MODE
    const failMode = failModes.find((mode) => mode === failText)
    if (failMode === undefined) return yield* fail(`--fail must be open or closed, got ${JSON.stringify(failText)}`)

    const cert = values.get("tls-cert")
    const key = values.get("tls-key")
    const ca = values.get("tls-ca")
    let tls: Option.Option<TlsPaths> = Option.none()
    if (cert !== undefined || key !== undefined || ca !== undefined) {
      if (cert === undefined || key === undefined) {
        return yield* fail("TLS needs both --tls-cert and --tls-key (--tls-ca alone does not enable TLS)")
      }
      tls = Option.some({ cert, key, ca: Option.fromNullable(ca) })
    }

    const secret = (flag: string, variable: string) => {
      const value = values.get(flag) ?? env[variable]
      return value === undefined || value === "" ? Option.none() : Option.some(Redacted.make(value))
    }

    const leaseTtlMs = yield* wholeNumber("lease-ttl-ms", values.get("lease-ttl-ms") ?? "2000", 1, 86_400_000)
    const shutdownTimeoutMs = yield* wholeNumber(
      "shutdown-timeout-ms",
      values.get("shutdown-timeout-ms") ?? "5000",
      0,
      3_600_000
    )

    return {
      _tag: "Serve",
      args: {
        config,
        host,
        port,
        store,
        failMode,
        monitorSecret: secret("monitor-secret", "THROTTLEKIT_MONITOR_SECRET"),
        fleetSecret: secret("fleet-secret", "THROTTLEKIT_FLEET_SECRET"),
        tls,
        leaseTtlMs,
        shutdownTimeoutMs
      }
    } as const
  })
