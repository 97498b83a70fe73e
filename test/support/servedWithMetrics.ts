/**
 * Our server on loopback with `/metrics`, as a test reaches it: a gRPC client of it (the `ServiceBackend`
 * door, one call per check) and a scrape of its page, read with the strict text-format reader.
 */
import { Context, Effect, Layer, Option } from "effect"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { MonitorHub } from "../../src/server/monitor/Hub.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { parsePage } from "./prometheus.js"

/** Builds the server from `options` (on 127.0.0.1, a free port, `/metrics` on another) in the scope. */
export const servedWithMetrics = (
  options: Omit<ThrottleKitServer.ThrottleKitServerOptions, "host" | "port" | "metrics">
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      ThrottleKitServer.layer({ ...options, host: "127.0.0.1", port: 0, metrics: { port: 0 } })
    )
    const grpc = Context.get(context, ThrottleKitServer.GrpcServer)
    const metrics = Option.getOrThrow(Context.get(context, ThrottleKitServer.MetricsServer))
    const client = yield* Effect.map(
      Layer.build(ServiceBackend.layer({ target: grpc.address, deadline: "5 seconds", coalesceChecks: false })),
      Context.get(RateLimiter)
    )
    const scrape = Effect.flatMap(
      Effect.tryPromise(() => fetch(`http://${metrics.address}/metrics`).then((r) => r.text())),
      parsePage
    )
    return { client, hub: Context.get(context, MonitorHub), scrape }
  })
