/**
 * Test support for the HTTP integration: a real server on loopback (port 0) and real `fetch` requests.
 */
import { NodeHttpServer } from "@effect/platform-node"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServer from "@effect/platform/HttpServer"
import { Context, Data, Effect, Layer } from "effect"
import { createServer, type Server } from "node:http"
import type { AdmitterPolicy, LimiterPolicy } from "../../src/Policy.js"

/** A failed `fetch` (connection refused, aborted, …). */
export class FetchFailed extends Data.TaggedError("FetchFailed")<{ readonly cause: unknown }> {}

/**
 * Builds `layer` over the platform's Node server (`NodeHttpServer.layer`) on 127.0.0.1 at a free port.
 * When the scope closes, open connections are dropped before the server closes, so shutdown never
 * waits for a connection a test left half-open (an aborted request).
 */
const buildOnLoopback = <ROut, E, R>(layer: Layer.Layer<ROut, E, R>) =>
  Effect.gen(function*() {
    let node: Server | undefined
    const server = NodeHttpServer.layer(() => (node = createServer()), { port: 0, host: "127.0.0.1" })
    const context = yield* Layer.build(Layer.provideMerge(layer, server))
    yield* Effect.addFinalizer(() => Effect.sync(() => node?.closeAllConnections()))
    return context
  })

/** The base URL of the server in `context`. */
const baseUrl = (context: Context.Context<HttpServer.HttpServer>) => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress"
    ? Effect.succeed(`http://127.0.0.1:${address.port}`)
    : Effect.dieMessage("expected a TCP address")
}

/** Serves `app` on loopback at a free port for the current scope; returns its base URL. */
export const serve = <E, R>(app: HttpApp.Default<E, R>) =>
  Effect.gen(function*() {
    const context = yield* buildOnLoopback(Layer.empty)
    yield* HttpServer.serveEffect(app).pipe(Effect.provide(context))
    return yield* baseUrl(context)
  })

/** Builds `layer` (e.g. `HttpApiBuilder.serve()`) over a loopback server; returns its base URL. */
export const serveLayer = <E, R>(layer: Layer.Layer<never, E, R>) =>
  Effect.gen(function*() {
    const context = yield* buildOnLoopback(layer)
    return yield* baseUrl(context)
  })

/** What a test reads from a response. */
export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

/** One real request; `init` is passed to `fetch`. Interrupting it aborts the request. */
export const request = (url: string, init: RequestInit = {}): Effect.Effect<Reply, FetchFailed> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { signal, ...init })
      return { status: response.status, headers: response.headers, body: await response.text() }
    },
    catch: (cause) => new FetchFailed({ cause })
  })

/** An hour in milliseconds: long enough that nothing replenishes or expires while a test runs. */
export const HOUR = 3_600_000

/** A GCRA limiter allowing `burst` requests per hour (nothing replenishes during a test). */
export const burstPolicy = (name: string, burst: number): LimiterPolicy => ({
  kind: "limiter",
  name,
  prefix: name,
  maxKeys: 1000,
  strategy: { kind: "gcra", limit: burst, periodMs: HOUR, burst }
})

/** A fixed concurrency ceiling of `slots`. */
export const slotsPolicy = (name: string, slots: number): AdmitterPolicy => ({
  kind: "admitter",
  name,
  prefix: name,
  maxKeys: 1000,
  concurrency: {
    algorithm: "fixed",
    minLimit: slots,
    maxLimit: slots,
    initialLimit: slots,
    backoffRatio: 0.9,
    smoothing: 0.2,
    tolerance: 1.5,
    rttWindow: 10
  }
})
