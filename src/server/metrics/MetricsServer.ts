/**
 * The server's operator HTTP listener (`serve --metrics-port`), separate from the gRPC port, as the
 * reference server's: `GET /metrics` answers the Prometheus text page, `GET /healthz` (or `/health`)
 * answers 200 `ok`, any other path 404, any other method 405. No auth: the page carries aggregates only,
 * and the listener binds loopback (`127.0.0.1`) unless told otherwise.
 *
 * It is a scoped resource and bounded: at most 64 connections at once (one more is closed as soon as it
 * is accepted), 8 KiB of headers, 5 s to send them, 10 s for a whole request, 5 s idle between requests
 * on a kept-alive connection; a request body is never read. Closing the scope stops accepting and closes
 * every connection at once (a scrape in progress is cut short): closing never waits on a peer, and
 * is bounded by 1 s whatever happens.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import { formatAddress } from "../GrpcServer.js"
import { listen, operatorLimits, send } from "../HttpListener.js"
import { CONTENT_TYPE } from "./Exposition.js"

/**
 * Where the listener binds.
 *
 * @since 0.3.0
 * @category models
 */
export interface MetricsServerOptions {
  /** The port; 0 picks a free one. */
  readonly port: number
  /** The interface to bind (default `127.0.0.1`). */
  readonly host?: string
}

/**
 * The listener, bound.
 *
 * @since 0.3.0
 * @category models
 */
export interface RunningMetricsServer {
  readonly host: string
  readonly port: number
  /** `host:port`, with an IPv6 host in brackets. */
  readonly address: string
}

/**
 * The metrics listener of a running server: its address, or none when the server serves no metrics.
 *
 * @since 0.3.0
 * @category tags
 */
export class MetricsServer
  extends Context.Tag("throttlekit-effect/MetricsServer")<MetricsServer, Option.Option<RunningMetricsServer>>()
{}

/**
 * The metrics listener could not bind its address.
 *
 * @since 0.3.0
 * @category errors
 */
export class MetricsBindError extends Schema.TaggedError<MetricsBindError>()("MetricsBindError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot listen on ${this.address} for /metrics: ${this.reason}`
  }
}

/**
 * The interface the listener binds by default: loopback only, as the reference server's.
 *
 * @since 0.3.0
 * @category constants
 */
export const DEFAULT_METRICS_HOST = "127.0.0.1"

/**
 * The listener's bounds.
 *
 * @since 0.3.0
 * @category constants
 */
export const limits = operatorLimits

const TEXT = "text/plain; charset=utf-8"

/** One `GET /metrics`: the page, or 500 when it could not be built (a bug, logged). */
const scrape = Effect.fn("ThrottleKitServer.metrics.scrape")(function*(
  page: Effect.Effect<string>,
  response: Http.ServerResponse
) {
  const text = yield* page.pipe(
    Effect.catchAllDefect((defect) =>
      Effect.as(
        Effect.logError("the /metrics page failed").pipe(Effect.annotateLogs({ defect: String(defect) })),
        undefined
      )
    )
  )
  if (text === undefined) send(response, 500, TEXT, "internal error\n")
  else send(response, 200, CONTENT_TYPE, text)
})

/**
 * Binds the listener and keeps it for the life of the scope; `page` builds the `/metrics` text at each
 * scrape.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: MetricsServerOptions,
  page: Effect.Effect<string>
): Effect.Effect<RunningMetricsServer, MetricsBindError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? DEFAULT_METRICS_HOST
    const requested = formatAddress(host, options.port)
    // Created first, so it is closed last: a scrape still running once the listener is closed is interrupted.
    const run = yield* FiberSet.makeRuntime<never>()
    const handle = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      const path = (request.url ?? "").split("?", 1)[0]
      if (request.method !== "GET") {
        // The body (if any) is never read: the connection closes after the answer.
        return send(response, 405, TEXT, "method not allowed\n", { allow: "GET", connection: "close" })
      }
      if (path === "/metrics") return void run(scrape(page, response))
      if (path === "/healthz" || path === "/health") return send(response, 200, TEXT, "ok\n")
      send(response, 404, TEXT, "not found (try /metrics or /healthz)\n")
    }
    const port = yield* listen({
      host,
      port: options.port,
      limits,
      handle,
      // Once listening, a server error (a failed accept) is logged; the listener keeps serving.
      onError: (error) => void run(Effect.logWarning(`/metrics listener: ${error.message}`))
    }).pipe(Effect.mapError((error) => new MetricsBindError({ address: requested, reason: error.reason })))
    return { host, port, address: formatAddress(host, port) }
  })
