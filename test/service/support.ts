/**
 * Test wiring for the Service door: our server on a free loopback port over a given store, and a
 * `ServiceBackend` pointed at it.
 */
import { Effect, Layer } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import { GrpcServer } from "../../src/server/GrpcServer.js"
import * as Server from "../../src/server/Server.js"
import type { RateLimiter } from "../../src/services/RateLimiter.js"

/** A `ServiceBackend` talking to our server (on 127.0.0.1, port 0) that serves `store`. */
export const serviceOver = <E>(
  store: Layer.Layer<RateLimiter, E>,
  options: Omit<ServiceBackend.ServiceBackendOptions, "target"> = {}
) =>
  Layer.unwrapEffect(
    Effect.map(GrpcServer, (server) => ServiceBackend.layer({ ...options, target: server.address }))
  ).pipe(Layer.provide(Server.layerTest), Layer.provide(store))

/** A `ServiceBackend` talking to our server over the memory store with `policies`. */
export const serviceOverMemory = (
  policies: ReadonlyArray<Policy>,
  options: Omit<ServiceBackend.ServiceBackendOptions, "target"> = {}
) => serviceOver(MemoryBackend.layer({ policies }), options)
