/**
 * The gRPC server as a scoped resource: it binds (failing with a typed `GrpcBindError`), serves a list
 * of Effect-implemented services plus the standard health service, and on release shuts down
 * gracefully: health turns NOT_SERVING, open streams end, new calls are refused, in-flight calls get
 * a bounded time to finish, and whatever is left is cancelled.
 *
 * Its connections are bounded (see `Listener`): at most `maxConnections` open, each must finish its
 * handshake (TLS, then the HTTP/2 preface) within `handshakeTimeoutMs`, and one without a call for
 * `idleTimeoutMs` is closed (a GOAWAY; clients reconnect on their next call). Its TLS material is checked
 * before it listens (see `TlsMaterial`): a certificate, key or CA bundle it could not serve with fails
 * the start with a `TlsMaterialError`.
 *
 * @since 0.1.0
 */
import * as grpc from "@grpc/grpc-js"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { serviceDefinition } from "../grpc/codec.js"
import * as Health from "./Health.js"
import * as Listener from "./Listener.js"
import type { FailureObserver, ServedService } from "./Service.js"
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
  /**
   * How long a new connection has to finish TLS (if any) and send the HTTP/2 preface before it is closed
   * (default 10 000 ms).
   */
  readonly handshakeTimeoutMs?: number
  /** How long a connection may go without a call before it is closed with a GOAWAY (default 300 000 ms; 0: never). */
  readonly idleTimeoutMs?: number
  /** The most connections open at once; one more is closed as soon as it is accepted (default 10 000). */
  readonly maxConnections?: number
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
  /** The connections open now (in their handshake or served). */
  readonly connections: Effect.Effect<number>
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
 * The default bound on a new connection's handshake (TLS, then the HTTP/2 preface).
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * The default time a connection may go without a call before it is closed.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000

/**
 * The default most connections open at once.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_MAX_CONNECTIONS = 10_000

/** The largest delay a Node timer takes (2^31 − 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647

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

/** The connection bounds of `options`, or why one is not a usable number. */
const limitsOf = (options: GrpcServerOptions) => {
  const whole = (name: string, value: number | undefined, fallback: number, min: number, max: number) =>
    value === undefined
      ? Either.right(fallback)
      : Number.isInteger(value) && value >= min && value <= max
      ? Either.right(value)
      : Either.left(`${name} must be a whole number from ${min} to ${max}, got ${value}`)
  return Either.all({
    handshakeTimeoutMs: whole(
      "handshakeTimeoutMs",
      options.handshakeTimeoutMs,
      DEFAULT_HANDSHAKE_TIMEOUT_MS,
      1,
      MAX_TIMER_MS
    ),
    idleTimeoutMs: whole("idleTimeoutMs", options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS, 0, MAX_TIMER_MS),
    maxConnections: whole("maxConnections", options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 10_000_000)
  })
}

const shutdown = (
  server: grpc.Server,
  listener: Listener.Listener,
  draining: Deferred.Deferred<void>,
  timeoutMs: number
) =>
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
    // grpc-js closed the sessions; a connection still open (one it never saw) is closed here.
    yield* listener.closeAll
  })

/**
 * Starts a server for `services` (plus health) and keeps it running for the life of the scope. `failed`,
 * when given, is told of every call answered with an error status (see `FailureObserver`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: GrpcServerOptions,
  services: ReadonlyArray<ServedService>,
  failed?: FailureObserver
): Effect.Effect<RunningServer, GrpcBindError | TlsMaterialError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const requestedPort = options.port ?? DEFAULT_PORT
    const requested = formatAddress(host, requestedPort)
    const limits = yield* Either.mapLeft(
      limitsOf(options),
      (reason) => new GrpcBindError({ address: requested, reason })
    )
    // Checked against the wall clock: certificate validity is what peers check against theirs.
    const tls = options.tls
    const warnings = tls === undefined ? [] : yield* Effect.flatten(Effect.sync(() => checkTls(tls, Date.now())))
    // Created first, so it is closed last: handlers still running after the forced shutdown are interrupted.
    const run = yield* FiberSet.makeRuntime<never>()
    const draining = yield* Deferred.make<void>()
    const names = services.map((service) => service.descriptor.typeName)
    const all = [...services, Health.make(names, Deferred.isDone(draining))]

    // grpc-js never listens itself: it serves the connections the listener hands it.
    const listener = yield* Effect.try({
      try: () => Listener.make({ limits, tls, warn: (message) => void run(Effect.logWarning(message)) }),
      catch: (error) =>
        new GrpcBindError({
          address: requested,
          reason: `bad TLS material: ${error instanceof Error ? error.message : String(error)}`
        })
    })
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const server = new grpc.Server(
          limits.idleTimeoutMs === 0 ? {} : { "grpc.max_connection_idle_ms": limits.idleTimeoutMs }
        )
        for (const service of all) {
          server.addService(serviceDefinition(service.descriptor), service.bind(run, Deferred.await(draining), failed))
        }
        return server
      }),
      // Then, once grpc-js is down, the listener closes whatever connection is left.
      (server) => shutdown(server, listener, draining, options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)
    )
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
    // Released before the server: it stops accepting (and drops connections still in their handshake)
    // before the drain begins.
    const port = yield* listener.bind(host, requestedPort, (connection) => injector.injectConnection(connection))
      .pipe(Effect.mapError((reason) => new GrpcBindError({ address: requested, reason })))

    return {
      host,
      port,
      address: formatAddress(host, port),
      security: securityOf(tls),
      services: names,
      warnings,
      connections: listener.open
    }
  })
