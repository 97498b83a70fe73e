/**
 * `throttlekit-effect serve`: load the policy file and the TLS files, then run `ThrottleKitServer.layer`
 * until interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`), printing one line once it listens and
 * one when it has stopped. Shutdown is the layer's: stop accepting, drain in-flight calls within a bound,
 * end open streams, release the store. SIGHUP (and, with `--watch-config`, a change to the file) reloads
 * the policy file through the layer's `ServerReload`, with one line per reload (`reloadConfig`).
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { watch } from "node:fs"
import { basename, dirname } from "node:path"
import * as PolicyFile from "../PolicyFile.js"
import type { PolicyError, PolicySet } from "../PolicySet.js"
import type { RedisConnection } from "../redis/RedisClient.js"
import { isLoopbackPeer } from "./Auth.js"
import type * as Cli from "./Cli.js"
import {
  type GrpcBindError,
  GrpcServer,
  type RunningServer,
  type ServerTls,
  type TlsMaterialError
} from "./GrpcServer.js"
import { appliedLine, refusedLine, type Reloader, ServerReload } from "./Reload.js"
import * as ThrottleKitServer from "./ThrottleKitServer.js"
import {
  LensServer,
  type LensServerError,
  type LensServerOptions,
  type MetricsBindError,
  MetricsServer,
  type RunningLensServer,
  type RunningMetricsServer,
  type StartupError
} from "./ThrottleKitServer.js"
import * as TlsMaterial from "./TlsMaterial.js"

/**
 * A TLS file named on the command line (`--tls-cert`, `--tls-key`, `--tls-ca`) cannot be read, or cannot
 * serve: empty or not PEM, an expired or not-yet-valid certificate, a key of another certificate. The
 * message names the flag and the path, never the content.
 *
 * @since 0.2.0
 * @category errors
 */
export class TlsFileError extends Schema.TaggedError<TlsFileError>()("TlsFileError", {
  /** The flag that named the file, e.g. `--tls-ca`. */
  flag: Schema.String,
  path: Schema.String,
  /** What is wrong, without the content. */
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.flag} ${this.path}: ${this.reason}`
  }
}

/**
 * Everything that stops the server from starting.
 *
 * @since 0.1.0
 * @category errors
 */
export type ServeError =
  | Cli.UsageError
  | PolicyError
  | GrpcBindError
  | TlsMaterialError
  | TlsFileError
  | StartupError
  | MetricsBindError
  | LensServerError

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "[::1]"])

const tlsFlags: Record<TlsMaterial.TlsPart, string> = { cert: "--tls-cert", key: "--tls-key", ca: "--tls-ca" }

/**
 * Reads the TLS files and checks them (`TlsMaterial.check`): a problem is a `TlsFileError` naming the
 * flag and the path of the file at fault.
 */
const readTls = (paths: Option.Option<Cli.TlsPaths>) =>
  Effect.gen(function*() {
    if (Option.isNone(paths)) return undefined
    const fs = yield* FileSystem.FileSystem
    const read = (flag: string, path: string) =>
      fs.readFile(path).pipe(
        Effect.map((bytes) => Buffer.from(bytes)),
        Effect.mapError((error) =>
          new TlsFileError({
            flag,
            path,
            reason: `cannot read the file (${error.message})`
          })
        )
      )
    const { allowNotYetValid, ca: caPath, cert: certPath, key: keyPath } = paths.value
    const cert = yield* read("--tls-cert", certPath)
    const key = yield* read("--tls-key", keyPath)
    const ca = Option.isSome(caPath) ? yield* read("--tls-ca", caPath.value) : undefined
    const tls: ServerTls = { cert, key, ...(ca === undefined ? {} : { ca }), allowNotYetValid }
    const pathOf: Record<TlsMaterial.TlsPart, string> = {
      cert: certPath,
      key: keyPath,
      ca: Option.getOrElse(caPath, () => "")
    }
    // The wall clock: certificate validity is what peers check against theirs.
    const now = yield* Effect.sync(() => Date.now())
    yield* Effect.mapError(
      TlsMaterial.check(tls, now),
      (error) =>
        new TlsFileError({
          flag: tlsFlags[error.part],
          path: pathOf[error.part],
          reason: error.problem === "notYetValid"
            ? `${error.reason}; pass --tls-allow-not-yet-valid to start anyway`
            : error.reason
        })
    )
    return tls
  })

/**
 * The Redis the command line names, as the store takes it. The URL and the password may be secrets: they
 * stay redacted until the client is built.
 */
const redisConnection = (target: Cli.RedisTarget<Redacted.Redacted<string>>): RedisConnection => {
  switch (target._tag) {
    case "Url":
      return target.url
    case "Cluster":
      return { cluster: target.nodes, password: Option.getOrUndefined(target.password) }
    case "Sentinel":
      return { sentinels: target.nodes, name: target.name, password: Option.getOrUndefined(target.password) }
  }
}

/** The store as the startup line names it: `memory`, `redis`, `redis cluster` or `redis sentinel`. */
const storeName = (store: Cli.Store): string =>
  store.kind === "memory"
    ? "memory"
    : store.target._tag === "Url"
    ? "redis"
    : `redis ${store.target._tag.toLowerCase()}`

/** The Lens the command line describes. */
const lensOptions = (lens: Cli.LensArgs<Redacted.Redacted<string>>): LensServerOptions => ({
  host: lens.host,
  port: lens.port,
  ...(Option.isSome(lens.secret) ? { secret: lens.secret.value } : {})
})

/**
 * The server the command line describes, serving the loaded policies (already validated: the set is reused).
 *
 * @since 0.2.0
 * @category utils
 */
export const serverOptions = (
  args: Cli.ServeArgs,
  policies: PolicySet,
  tls: ServerTls | undefined
): ThrottleKitServer.ThrottleKitServerOptions => ({
  policies,
  store: args.store.kind === "memory" ? { kind: "memory" } : {
    kind: "redis",
    redis: redisConnection(args.store.target),
    replicaAcks: args.store.replicaAcks,
    ...(Option.isSome(args.store.keyPrefix) ? { keyPrefix: args.store.keyPrefix.value } : {}),
    ...(args.store.insurance === undefined ? {} : { insurance: args.store.insurance })
  },
  leaseTtlMs: args.leaseTtlMs,
  failMode: args.failMode,
  ...(Option.isSome(args.nodeId) ? { nodeId: args.nodeId.value } : {}),
  region: args.region,
  monitor: args.monitor,
  ...(Option.isSome(args.metrics) ? { metrics: args.metrics.value } : {}),
  ...(Option.isSome(args.lens) ? { lens: lensOptions(args.lens.value) } : {}),
  host: args.host,
  port: args.port,
  shutdownTimeoutMs: args.shutdownTimeoutMs,
  handshakeTimeoutMs: args.handshakeTimeoutMs,
  idleTimeoutMs: args.idleTimeoutMs,
  maxConnections: args.maxConnections,
  maxWatchStreams: args.maxWatchStreams,
  ...(Option.isSome(args.monitorSecret) ? { monitorSecret: args.monitorSecret.value } : {}),
  ...(Option.isSome(args.fleetSecret) ? { fleetSecret: args.fleetSecret.value } : {}),
  admin: args.admin,
  ...(Option.isSome(args.adminSecret) ? { adminSecret: args.adminSecret.value } : {}),
  ...(tls === undefined ? {} : { tls }),
  ...(args.shadow === true ? { shadow: true } : {})
})

/**
 * The one line printed once the server is listening, e.g.
 * `throttlekit-effect listening on 127.0.0.1:50051 [store=memory, insecure, lease-ttl=2000ms, fail=open] (2 policies: api, llm)`;
 * `, monitor=off` follows `fail=` when the Monitor door is off, `, shadow=all` when `--shadow` is given,
 * `, insurance=1/N` (or `=S`) with `--insurance-instances N` (`--insurance-share S`), `, metrics=HOST:PORT`
 * (the bound address) when `/metrics` is served, and `, lens=HOST:PORT` when the Lens is.
 *
 * @since 0.1.0
 * @category utils
 */
export const startupLine = (
  server: RunningServer,
  args: Cli.ServeArgs,
  policies: PolicySet,
  metrics: Option.Option<RunningMetricsServer> = Option.none(),
  lens: Option.Option<RunningLensServer> = Option.none()
): string => {
  const names = policies.names.length === 0 ? "none" : policies.names.join(", ")
  const count = `${policies.names.length} ${policies.names.length === 1 ? "policy" : "policies"}`
  const insurance = args.store.kind === "redis" ? args.store.insurance : undefined
  const operator = (args.monitor ? "" : ", monitor=off") + (args.admin ? "" : ", admin=off") +
    (args.shadow === true ? ", shadow=all" : "") +
    (insurance === undefined
      ? ""
      : `, insurance=${"instances" in insurance ? `1/${insurance.instances}` : insurance.share}`) +
    Option.match(metrics, { onNone: () => "", onSome: (m) => `, metrics=${m.address}` }) +
    Option.match(lens, { onNone: () => "", onSome: (l) => `, lens=${l.address}` })
  return `throttlekit-effect listening on ${server.address} [store=${
    storeName(args.store)
  }, ${server.security}, lease-ttl=${args.leaseTtlMs}ms, fail=${args.failMode}${operator}] (${count}: ${names})`
}

/**
 * Reads the config file again and hands it to the server: one line either way, on stdout when applied
 * (with what changed), on stderr when refused (the first problem: the file does not decode or validate,
 * or the server cannot take it without a restart). A refused reload changes nothing.
 *
 * @since 0.3.0
 * @category utils
 */
export const reloadConfig = (args: Cli.ServeArgs, reloader: Reloader): Effect.Effect<void> =>
  PolicyFile.load(args.config, { region: args.region }).pipe(
    Effect.flatMap((policies) =>
      Effect.map(reloader.reload(policies), (summary) => appliedLine(args.config, summary, policies.size))
    ),
    Effect.matchEffect({
      onFailure: (error) => Console.error(refusedLine(args.config, error.message)),
      onSuccess: (line) => Console.log(line)
    })
  )

/** How long `--watch-config` lets changes to the file gather before one reload. */
const WATCH_DEBOUNCE = Duration.millis(250)

/**
 * Changes to the file at `path` (seen on its directory, so a file replaced by a rename, as editors and
 * config tools do, is still followed), for the life of the scope. A watch that fails ends the stream with
 * the system's reason.
 */
const fileChanges = (path: string): Stream.Stream<void, string> =>
  Stream.asyncScoped<void, string>((emit) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const name = basename(path)
        const watcher = watch(dirname(path), (_event, changed) => {
          if (changed === null || changed === name) void emit.single(undefined)
        })
        watcher.on("error", (error) => void emit.fail(error.message))
        return watcher
      }),
      (watcher) => Effect.sync(() => watcher.close())
    ), { bufferSize: 1, strategy: "sliding" })

/**
 * Reloads the config on each SIGHUP (and, with `--watch-config`, on each change to the file), one reload
 * at a time (requests arriving meanwhile make one more), for the life of the scope. The signal listener is
 * in place when this returns, and removed (the file watch closed) when the scope closes.
 */
const reloadOnRequest = (args: Cli.ServeArgs, reloader: Reloader) =>
  Effect.gen(function*() {
    const requests = yield* Queue.sliding<void>(1)
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const onHangup = () => void Queue.unsafeOffer(requests, undefined)
        process.on("SIGHUP", onHangup)
        return onHangup
      }),
      (onHangup) => Effect.sync(() => process.removeListener("SIGHUP", onHangup))
    )
    if (args.watchConfig) {
      yield* Effect.forkScoped(
        Stream.runForEach(Stream.debounce(fileChanges(args.config), WATCH_DEBOUNCE), () =>
          Queue.offer(requests, undefined))
          .pipe(Effect.catchAll((reason) =>
            Console.error(`throttlekit-effect: --watch-config stopped watching ${args.config}: ${reason}`)
          ))
      )
    }
    yield* Effect.forkScoped(Stream.runForEach(Stream.fromQueue(requests), () =>
      reloadConfig(args, reloader)))
  })

/**
 * What `serve` prints while the server runs: the startup line and warnings once it listens, and a line
 * when shutdown begins (released before the server, so it comes before the drain). SIGHUP reloads the
 * config from the startup line on.
 */
const announce = (
  args: Cli.ServeArgs,
  options: ThrottleKitServer.ThrottleKitServerOptions & { readonly policies: PolicySet },
  started: Ref.Ref<boolean>
): Layer.Layer<never, never, GrpcServer | MetricsServer | LensServer | ServerReload> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const server = yield* GrpcServer
    const metrics = yield* MetricsServer
    const lens = yield* LensServer
    yield* Effect.addFinalizer(() => Console.log("throttlekit-effect shutting down: draining in-flight calls"))
    yield* reloadOnRequest(args, yield* ServerReload)
    yield* Console.log(startupLine(server, args, options.policies, metrics, lens))
    yield* Ref.set(started, true)
    if (server.security === "insecure" && !LOOPBACK.has(args.host)) {
      yield* Console.error(
        `warning: serving insecure gRPC on ${server.address}; use --tls-cert/--tls-key off loopback`
      )
    }
    for (const warning of ThrottleKitServer.warnings(options, args.host)) yield* Console.error(warning)
    if (Option.isSome(metrics) && !isLoopbackPeer(metrics.value.host)) {
      yield* Console.error(
        `warning: /metrics is served on ${metrics.value.address} without auth (aggregates only, no keys); ` +
          "firewall it if that is not meant"
      )
    }
    if (Option.isSome(lens) && !isLoopbackPeer(lens.value.host)) {
      yield* Console.error(
        `warning: the Lens on ${lens.value.address} is plain HTTP: its secret and the keys it shows cross the ` +
          "network in clear; put it behind TLS (a reverse proxy) or keep it on loopback"
      )
    }
    for (const warning of server.warnings) yield* Console.error(`warning: ${warning}`)
  }))

/** The last line, once everything is released (only when the server had started). */
const stoppedLine = (started: Ref.Ref<boolean>): Layer.Layer<never> =>
  Layer.scopedDiscard(
    Effect.addFinalizer(() => Effect.whenEffect(Console.log("throttlekit-effect stopped"), Ref.get(started)))
  )

/**
 * `serve` as a layer (run it with `Layer.launch`): loads the config and the TLS files, then runs the
 * server with its output lines.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (args: Cli.ServeArgs): Layer.Layer<never, ServeError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const policies = yield* PolicyFile.load(args.config, { region: args.region })
      const tls = yield* readTls(args.tls)
      const started = yield* Ref.make(false)
      const options = { ...serverOptions(args, policies, tls), policies }
      return announce(args, options, started).pipe(
        Layer.provide(ThrottleKitServer.layer(options)),
        // Built first, so released last: after the server, the wrappers and the store.
        Layer.provide(stoppedLine(started))
      )
    })
  )
