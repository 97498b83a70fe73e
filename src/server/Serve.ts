/**
 * `throttlekit-effect serve`: load the policy file, build the store, serve it over gRPC until
 * interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`), then shut down gracefully: stop accepting,
 * drain in-flight calls within a bound, end open streams, release the store.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as PolicyConfig from "../Config.js"
import * as ServerDoors from "../fleet/ServerDoors.js"
import * as MemoryBackend from "../layers/MemoryBackend.js"
import * as RedisBackend from "../layers/RedisBackend.js"
import type { Store } from "../services/RateLimiterStore.js"
import * as Cli from "./Cli.js"
import { formatAddress, type GrpcBindError, GrpcServer, type RunningServer, type ServerTls } from "./GrpcServer.js"
import * as Server from "./Server.js"

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
 * Everything that stops the server from starting.
 *
 * @since 0.1.0
 * @category errors
 */
export type ServeError = Cli.UsageError | PolicyConfig.ConfigError | GrpcBindError | StartupError

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

/** The store the command line picked, serving the loaded policies (already validated: the set is reused). */
const storeLayer = (
  args: Cli.ServeArgs,
  policies: PolicyConfig.PolicySet
): Layer.Layer<Store, StartupError> => {
  switch (args.store.kind) {
    case "memory":
      return MemoryBackend.layerStore({ policies, leaseTtlMs: args.leaseTtlMs }).pipe(
        Layer.mapError((error) => new StartupError({ reason: `the memory store failed to start: ${error.message}` }))
      )
    case "redis":
      return RedisBackend.layerStore({ policies, redis: args.store.url, leaseTtlMs: args.leaseTtlMs }).pipe(
        Layer.mapError((error) => new StartupError({ reason: `the Redis store failed to start: ${error.message}` }))
      )
  }
}

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
  policies: PolicyConfig.PolicySet
): string => {
  const names = policies.names.length === 0 ? "none" : policies.names.join(", ")
  const count = `${policies.names.length} ${policies.names.length === 1 ? "policy" : "policies"}`
  return `throttlekit-effect listening on ${server.address} [store=${args.store.kind}, ${server.security}, lease-ttl=${args.leaseTtlMs}ms, fail=${args.failMode}] (${count}: ${names})`
}

/**
 * Serves until interrupted.
 *
 * @since 0.1.0
 * @category programs
 */
export const serve = (args: Cli.ServeArgs): Effect.Effect<never, ServeError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const started = yield* Ref.make(false)
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const policies = yield* PolicyConfig.load(args.config)
        const tls = yield* readTls(args.tls)
        // The Monitor and Fleet doors; around the store, the two-tier wrapper, the Monitor tap and the fail
        // mode outermost (so it also covers a two-tier coordinator outage and the Monitor records no
        // synthesized decision: an outage is not a decision), with the front on top.
        const doors = yield* ServerDoors.make({
          policies,
          store: args.store,
          monitorSecret: args.monitorSecret,
          fleetSecret: args.fleetSecret,
          nodeId: formatAddress(args.host, args.port),
          failMode: args.failMode
        }).pipe(
          Effect.mapError((error) => new StartupError({ reason: `the coordinator failed to start: ${error.message}` }))
        )
        const context = yield* Layer.build(
          Server.layer({
            host: args.host,
            port: args.port,
            shutdownTimeoutMs: args.shutdownTimeoutMs,
            services: doors.services,
            ...(tls === undefined ? {} : { tls })
          }).pipe(
            Layer.provide(doors.around(storeLayer(args, policies)))
          )
        )
        // Runs before the server and the store are released (finalizers run last-added first).
        yield* Effect.addFinalizer(() => Console.log("throttlekit-effect shutting down: draining in-flight calls"))
        const server = Context.get(context, GrpcServer)
        yield* Console.log(startupLine(server, args, policies))
        yield* Ref.set(started, true)
        if (server.security === "insecure" && !LOOPBACK.has(args.host)) {
          yield* Console.error(
            `warning: serving insecure gRPC on ${server.address}; use --tls-cert/--tls-key off loopback`
          )
        }
        for (const warning of doors.warnings(args.host)) yield* Console.error(warning)
        return yield* Effect.never
      })
    ).pipe(Effect.ensuring(Effect.whenEffect(Console.log("throttlekit-effect stopped"), Ref.get(started))))
  })

/**
 * The whole command line: `--help` prints the usage, `serve` serves.
 *
 * @since 0.1.0
 * @category programs
 */
export const main = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<void, ServeError, FileSystem.FileSystem> =>
  Effect.flatMap(
    Cli.parse(argv, env),
    (command) => command._tag === "Help" ? Console.log(Cli.usage) : serve(command.args)
  )
