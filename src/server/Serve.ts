/**
 * `throttlekit-effect serve`: load the policy file and the TLS files, then run `ThrottleKitServer.layer`
 * until interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`), printing one line once it listens and
 * one when it has stopped. Shutdown is the layer's: stop accepting, drain in-flight calls within a bound,
 * end open streams, release the store.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as PolicyFile from "../PolicyFile.js"
import type { PolicyError, PolicySet } from "../PolicySet.js"
import type * as Cli from "./Cli.js"
import { formatAddress, type GrpcBindError, GrpcServer, type RunningServer, type ServerTls } from "./GrpcServer.js"
import * as ThrottleKitServer from "./ThrottleKitServer.js"
import { StartupError } from "./ThrottleKitServer.js"

/**
 * Everything that stops the server from starting.
 *
 * @since 0.1.0
 * @category errors
 */
export type ServeError = Cli.UsageError | PolicyError | GrpcBindError | StartupError

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "[::1]"])

const readTls = (paths: Option.Option<Cli.TlsPaths>) =>
  Effect.gen(function*() {
    if (Option.isNone(paths)) return undefined
    const fs = yield* FileSystem.FileSystem
    const read = (flag: string, path: string) =>
      fs.readFile(path).pipe(
        Effect.map((bytes) => Buffer.from(bytes)),
        Effect.mapError((error) => new StartupError({ reason: `cannot read ${flag} ${path}: ${error.message}` }))
      )
    const cert = yield* read("--tls-cert", paths.value.cert)
    const key = yield* read("--tls-key", paths.value.key)
    const ca = Option.isSome(paths.value.ca) ? yield* read("--tls-ca", paths.value.ca.value) : undefined
    const tls: ServerTls = ca === undefined ? { cert, key } : { cert, key, ca }
    return tls
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
  // The URL may hold a password: the command line reads it redacted, and it travels so to the store.
  store: args.store.kind === "memory" ? { kind: "memory" } : { kind: "redis", redis: args.store.url },
  leaseTtlMs: args.leaseTtlMs,
  failMode: args.failMode,
  nodeId: formatAddress(args.host, args.port),
  host: args.host,
  port: args.port,
  shutdownTimeoutMs: args.shutdownTimeoutMs,
  maxWatchStreams: args.maxWatchStreams,
  ...(Option.isSome(args.monitorSecret) ? { monitorSecret: args.monitorSecret.value } : {}),
  ...(Option.isSome(args.fleetSecret) ? { fleetSecret: args.fleetSecret.value } : {}),
  ...(tls === undefined ? {} : { tls })
})

/**
 * The one line printed once the server is listening, e.g.
 * `throttlekit-effect listening on 127.0.0.1:50051 [store=memory, insecure, lease-ttl=2000ms, fail=open] (2 policies: api, llm)`.
 *
 * @since 0.1.0
 * @category utils
 */
export const startupLine = (
  server: RunningServer,
  args: Cli.ServeArgs,
  policies: PolicySet
): string => {
  const names = policies.names.length === 0 ? "none" : policies.names.join(", ")
  const count = `${policies.names.length} ${policies.names.length === 1 ? "policy" : "policies"}`
  return `throttlekit-effect listening on ${server.address} [store=${args.store.kind}, ${server.security}, lease-ttl=${args.leaseTtlMs}ms, fail=${args.failMode}] (${count}: ${names})`
}

/**
 * What `serve` prints while the server runs: the startup line and warnings once it listens, and a line
 * when shutdown begins (released before the server, so it comes before the drain).
 */
const announce = (
  args: Cli.ServeArgs,
  options: ThrottleKitServer.ThrottleKitServerOptions & { readonly policies: PolicySet },
  started: Ref.Ref<boolean>
): Layer.Layer<never, never, GrpcServer> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const server = yield* GrpcServer
    yield* Effect.addFinalizer(() => Console.log("throttlekit-effect shutting down: draining in-flight calls"))
    yield* Console.log(startupLine(server, args, options.policies))
    yield* Ref.set(started, true)
    if (server.security === "insecure" && !LOOPBACK.has(args.host)) {
      yield* Console.error(
        `warning: serving insecure gRPC on ${server.address}; use --tls-cert/--tls-key off loopback`
      )
    }
    for (const warning of ThrottleKitServer.warnings(options, args.host)) yield* Console.error(warning)
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
      const policies = yield* PolicyFile.load(args.config)
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
