/**
 * The server's operator HTTP listeners (`/metrics`, the Lens): a `node:http` server bound as a scoped
 * resource, with the bounds both share. At most `maxConnections` connections at once (one more is closed
 * as soon as it is accepted), bounded headers and request times; closing the scope stops accepting and
 * closes every connection at once (a response in progress, an event stream included, is cut short), and
 * never takes longer than `closeTimeoutMs` whatever the peers do.
 *
 * @since 0.3.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"

/**
 * The bounds of a listener.
 *
 * @since 0.3.0
 * @category models
 */
export interface HttpListenerLimits {
  readonly maxConnections: number
  readonly maxHeaderBytes: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly closeTimeoutMs: number
}

/**
 * The bounds of the operator listeners: 64 connections, 8 KiB of headers, 5 s to send them, 10 s for a
 * whole request, 5 s idle between requests on a kept-alive connection, 1 s to close.
 *
 * @since 0.3.0
 * @category constants
 */
export const operatorLimits = {
  maxConnections: 64,
  maxHeaderBytes: 8192,
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5000,
  closeTimeoutMs: 1000
} as const satisfies HttpListenerLimits

/**
 * The listener could not listen: the port is not one, or the bind failed.
 *
 * @since 0.3.0
 * @category errors
 */
export class HttpListenError extends Schema.TaggedError<HttpListenError>()("HttpListenError", {
  reason: Schema.String
}) {}

/**
 * Writes a whole answer, unless one was already sent or the connection is gone.
 *
 * @since 0.3.0
 * @category utils
 */
export const send = (
  response: Http.ServerResponse,
  status: number,
  type: string,
  body: string,
  extra: Http.OutgoingHttpHeaders = {}
): void => {
  if (response.headersSent || response.destroyed) return
  response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), ...extra })
  response.end(body)
}

/**
 * Binds `host:port` (port 0: a free one) and serves `handle` for the life of the scope; answers the port
 * bound. Once listening, a server error (a failed accept) goes to `onError` and the listener keeps serving.
 *
 * @since 0.3.0
 * @category constructors
 */
export const listen = (
  options: {
    readonly host: string
    readonly port: number
    readonly limits: HttpListenerLimits
    readonly handle: (request: Http.IncomingMessage, response: Http.ServerResponse) => void
    readonly onError: (error: Error) => void
  }
): Effect.Effect<number, HttpListenError, Scope.Scope> =>
  Effect.gen(function*() {
    const { host, limits, port: requested } = options
    if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
      return yield* new HttpListenError({ reason: "the port must be a whole number from 0 to 65535" })
    }
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const server = Http.createServer({
          maxHeaderSize: limits.maxHeaderBytes,
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          connectionsCheckingInterval: 1000
        }, options.handle)
        server.maxConnections = limits.maxConnections
        return server
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        }).pipe(Effect.interruptible, Effect.timeoutOption(Duration.millis(limits.closeTimeoutMs)))
    )
    const port = yield* Effect.async<number, HttpListenError>((resume) => {
      const onError = (error: Error) => {
        server.off("listening", onListening)
        resume(Effect.fail(new HttpListenError({ reason: error.message })))
      }
      const onListening = () => {
        server.off("error", onError)
        const bound = server.address()
        resume(Effect.succeed(typeof bound === "object" && bound !== null ? bound.port : requested))
      }
      server.once("error", onError)
      server.once("listening", onListening)
      server.listen({ host, port: requested })
      return Effect.sync(() => {
        server.off("error", onError)
        server.off("listening", onListening)
      })
    })
    yield* Effect.sync(() => server.on("error", options.onError))
    return port
  })
