/**
 * The gRPC server as a scoped resource: it binds (failing with a typed `GrpcBindError`), serves a list
 * of Effect-implemented services plus the standard health service, and on release shuts down
 * gracefully: health turns NOT_SERVING, open streams end, new calls are refused, in-flight calls get
 * a bounded time to finish, and whatever is left is cancelled.
 *
 * Its TLS material is checked before it listens (see `TlsMaterial`): a certificate, key or CA bundle it
 * could not serve with fails the start with a `TlsMaterialError`.
 *
 * @since 0.1.0
 */
import * as grpc from "@grpc/grpc-js"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { serviceDefinition } from "../grpc/codec.js"
import * as Health from "./Health.js"
import type { ServedService } from "./Service.js"
import { check as checkTls, type ServerTls, type TlsMaterialError } from "./TlsMaterial.js"

export type { ServerTls } from "./TlsMaterial.js"
export { TlsMaterialError } from "./TlsMaterial.js"

/**
 * Where and how to listen.
 *
 * @since 0.1.0
 * @category models
 */
export interface GrpcServerOptions {
  /** The interface to bind (default "127.0.0.1"). */
  readonly host?: string
  /** The port; 0 picks a free one (default 50051). */
  readonly port?: number
  /** TLS (or mTLS with `ca`); insecure without it. */
  readonly tls?: ServerTls
  /** How long in-flight calls may take to finish on shutdown before they are cancelled (default 5000 ms). */
  readonly shutdownTimeoutMs?: number
}

/**
 * The transport security a server runs with.
 *
 * @since 0.1.0
 * @category models
 */
export type Security = "insecure" | "TLS" | "mTLS"

/**
 * A running server: the address it really bound, its security, and the services it serves.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunningServer {
  readonly host: string
  readonly port: number
  /** `host:port`, with an IPv6 host in brackets. */
  readonly address: string
  readonly security: Security
  /** The served service names, health excluded (e.g. "throttlekit.v1.RateLimiter"). */
  readonly services: ReadonlyArray<string>
  /** What the server started with despite a doubt, e.g. a TLS certificate not valid yet (`allowNotYetValid`). */
  readonly warnings: ReadonlyArray<string>
}

/**
 * The running server, as a service (provided by `ThrottleKitServer.layer`).
 *
 * @since 0.1.0
 * @category tags
 */
export class GrpcServer extends Context.Tag("throttlekit-effect/GrpcServer")<GrpcServer, RunningServer>() {}

/**
 * The server could not listen on the requested address.
 *
 * @since 0.1.0
 * @category errors
 */
export class GrpcBindError extends Schema.TaggedError<GrpcBindError>()("GrpcBindError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot listen on ${this.address}: ${this.reason}`
  }
}

/**
 * The default port.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PORT = 50051

/**
 * The default bound on draining in-flight calls at shutdown.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000

/**
 * `host:port`, with an IPv6 host in brackets.
 *
 * @since 0.1.0
 * @category utils
 */
export const formatAddress = (host: string, port: number): string =>
  host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`

const securityOf = (tls: ServerTls | undefined): Security =>
  tls === undefined ? "insecure" : tls.ca === undefined ? "TLS" : "mTLS"

const credentialsOf = (tls: ServerTls | undefined): grpc.ServerCredentials =>
  tls === undefined
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(
      tls.ca ?? null,
      [{ private_key: tls.key, cert_chain: tls.cert }],
      tls.ca !== undefined
    )

const shutdown = (server: grpc.Server, draining: Deferred.Deferred<void>, timeoutMs: number) =>
  Effect.gen(function*() {
    yield* Deferred.succeed(draining, undefined)
    // Finalizers run uninterruptibly; the wait must be interruptible for the timeout to cut it short.
    yield* Effect.async<void>((resume) => server.tryShutdown(() => resume(Effect.void))).pipe(
      Effect.interruptible,
      Effect.timeout(Duration.millis(timeoutMs)),
      Effect.catchTag("TimeoutException", () =>
        Effect.zipRight(
          Effect.logWarning(`in-flight calls did not finish within ${timeoutMs} ms; cancelling them`),
          Effect.sync(() => server.forceShutdown())
        ))
    )
  })

/**
 * Starts a server for `services` (plus health) and keeps it running for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: GrpcServerOptions,
  services: ReadonlyArray<ServedService>
): Effect.Effect<RunningServer, GrpcBindError | TlsMaterialError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const requestedPort = options.port ?? DEFAULT_PORT
    const requested = formatAddress(host, requestedPort)
    // Checked against the wall clock: certificate validity is what peers check against theirs.
    const tls = options.tls
    const warnings = tls === undefined ? [] : yield* Effect.flatten(Effect.sync(() => checkTls(tls, Date.now())))
    // Created first, so it is closed last: handlers still running after the forced shutdown are interrupted.
    const run = yield* FiberSet.makeRuntime<never>()
    const draining = yield* Deferred.make<void>()
    const names = services.map((service) => service.descriptor.typeName)
    const all = [...services, Health.make(names, Deferred.isDone(draining))]

    const server = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const server = new grpc.Server()
        for (const service of all) {
          server.addService(serviceDefinition(service.descriptor), service.bind(run, Deferred.await(draining)))
        }
        return server
      }),
      (server) => shutdown(server, draining, options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)
    )

    const credentials = yield* Effect.try({
      try: () => credentialsOf(tls),
      catch: (error) =>
        new GrpcBindError({
          address: requested,
          reason: `bad TLS material: ${error instanceof Error ? error.message : String(error)}`
        })
    })
    const port = yield* Effect.async<number, GrpcBindError>((resume) => {
      server.bindAsync(requested, credentials, (error, port) => {
        if (error !== null) resume(Effect.fail(new GrpcBindError({ address: requested, reason: error.message })))
        else resume(Effect.succeed(port))
      })
    })

    return {
      host,
      port,
      address: formatAddress(host, port),
      security: securityOf(tls),
      services: names,
      warnings
    }
  })
