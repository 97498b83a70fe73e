/**
 * Test wiring for the Service door: our server (`ThrottleKitServer.layer`) on a free loopback port, and a
 * `ServiceBackend` pointed at it.
 */
import { Context, Effect, Layer } from "effect"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"

/** What the server under test is built from (it always binds 127.0.0.1 on a free port). */
export type ServerOptions = Omit<ThrottleKitServer.ThrottleKitServerOptions, "host" | "port">

/** Our server (on 127.0.0.1, port 0) built from `server`, running for the life of the scope. */
export const runningServer = (server: ServerOptions) =>
  Effect.map(
    Layer.build(ThrottleKitServer.layer({ ...server, host: "127.0.0.1", port: 0 })),
    (context) => Context.get(context, ThrottleKitServer.GrpcServer)
  )

/** A `ServiceBackend` talking to our server (on 127.0.0.1, port 0) built from `server`. */
export const serviceOver = (
  server: ServerOptions,
  options: Omit<ServiceBackend.ServiceBackendOptions, "target"> = {}
) =>
  Layer.unwrapEffect(
    Effect.map(
      ThrottleKitServer.GrpcServer,
      (running) => ServiceBackend.layer({ ...options, target: running.address })
    )
  ).pipe(Layer.provide(ThrottleKitServer.layer({ ...server, host: "127.0.0.1", port: 0 })))

/** A `ServiceBackend` talking to our server over the memory store with `policies`. */
export const serviceOverMemory = (
  policies: ReadonlyArray<Policy>,
  options: Omit<ServiceBackend.ServiceBackendOptions, "target"> = {}
) => serviceOver({ policies }, options)

/** A `ServiceBackend` talking to our server over the Redis store at `url` with `policies`. */
export const serviceOverRedis = (
  policies: ReadonlyArray<Policy>,
  url: string,
  options: Omit<ServiceBackend.ServiceBackendOptions, "target"> = {}
) => serviceOver({ policies, store: { kind: "redis", redis: url } }, options)
