/**
 * The server's operator surface: `/metrics` and `/healthz` over HTTP (`ThrottleKitServer.layer`'s
 * `metrics`, `serve --metrics-port`), `region` / `nodeId`, and `monitor: false` (`--monitor off`).
 *
 * Real parts throughout: our server on loopback (in this process, built as `serve` builds it), real
 * gRPC calls through the `ServiceBackend` client (and raw calls where the client has no method), real
 * HTTP requests, and the page read with a strict reader of the text format (`test/support/prometheus`).
 * The counters must move by exactly what the gRPC answers said. Then the CLI in its own process, with
 * the flags; then a Redis store that goes down, for the fail mode's outage counter.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Either, Exit, Layer, Option, Scope } from "effect"
import { readFileSync } from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { Health } from "../../src/grpc/generated/health_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import { MonitorHub } from "../../src/server/monitor/Hub.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { type Page, parsePage, samplesOf, valueOf } from "../support/prometheus.js"
import { rawClient, sendRaw } from "../support/rawWire.js"
import { redisServer } from "../support/redisServer.js"
import { repoRoot, startServer as startCli, tempFile } from "./cliProcess.js"

// api's window is 30 days: the tests count its decisions across calls on the real clock, and a fixed
// window of a minute rolls over at every minute's start.
const config = `
limiters:
  api:
    strategy: fixedWindow
    limit: 3
    windowMs: 30d
  quiet:
    strategy: gcra
    limit: 100
    period: 1s
  tokens:
    tokenBudget:
      budget: 100
      windowMs: 1h
  pool:
    concurrency:
      minLimit: 1
      maxLimit: 1
`

const packageVersion = (JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string })
  .version

type ServerOptions = Omit<ThrottleKitServer.ThrottleKitServerOptions, "policies" | "host" | "port">

/** Our server on a free loopback port, with `/metrics` on another unless `serveMetrics` is false. */
const startServer = (options: ServerOptions = {}, serveMetrics = true) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(config, "test")
    const context = yield* Layer.build(ThrottleKitServer.layer({
      policies,
      host: "127.0.0.1",
      port: 0,
      ...(serveMetrics ? { metrics: { port: 0 } } : {}),
      ...options
    }))
    const grpc = Context.get(context, ThrottleKitServer.GrpcServer)
    return {
      target: grpc.address,
      services: grpc.services,
      metrics: Context.get(context, ThrottleKitServer.MetricsServer),
      hub: Context.get(context, MonitorHub)
    }
  })

/** The address of a server's `/metrics` listener (a test bug when it has none). */
const metricsAddress = (metrics: Option.Option<ThrottleKitServer.RunningMetricsServer>): string =>
  Option.getOrThrowWith(metrics, () => new Error("the server serves no /metrics")).address

/** One HTTP request; the status, the content type and the body. */
const request = (address: string, urlPath: string, method = "GET") =>
  Effect.tryPromise(async () => {
    const response = await fetch(`http://${address}${urlPath}`, { method })
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() }
  })

/** `/metrics`, read. */
const scrape = (address: string) =>
  Effect.gen(function*() {
    const answer = yield* request(address, "/metrics")
    expect(answer.status).toBe(200)
    expect(answer.type).toBe("text/plain; version=0.0.4; charset=utf-8")
    return yield* parsePage(answer.body)
  })

const clientOf = (target: string) =>
  Effect.map(
    Layer.build(ServiceBackend.layer({ target, deadline: "5 seconds", coalesceChecks: false })),
    Context.get(RateLimiter)
  )

const counts = (page: Page, policy: string) => ({
  allowed: valueOf(page, "throttlekit_allowed_total", { policy }),
  denied: valueOf(page, "throttlekit_denied_total", { policy })
})

/** The field-1 string message (`HealthCheckRequest.service`), encoded by hand. */
const healthRequest = (service: string): Buffer => {
  const bytes = Buffer.from(service, "utf8")
  return Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes])
}

describe("/metrics and /healthz", () => {
  it.live("the decision counters move by exactly what the gRPC answers decided", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ region: "eu-west-1", nodeId: "node-7" })
      const address = metricsAddress(server.metrics)
      const limiter = yield* clientOf(server.target)

      const before = yield* scrape(address)
      expect(counts(before, "api")).toEqual({ allowed: 0, denied: 0 })
      // Every family is declared, even with no sample yet.
      for (const name of ["throttlekit_allowed_total", "throttlekit_denied_total", "throttlekit_rpc_errors_total"]) {
        expect(before.types.get(name)).toBe("counter")
      }
      expect(valueOf(before, "throttlekit_limit", { policy: "api" })).toBeUndefined()

      const singles = yield* Effect.forEach(Array.from({ length: 5 }), () => limiter.check("api", "alice"))
      const batch = yield* limiter.checkMany("api", ["bob", "carol", "alice"])
      const quiet = yield* limiter.check("quiet", "q")
      const decisions = [...singles, ...batch]
      const allowed = decisions.filter((d) => d.allowed).length
      const denied = decisions.length - allowed
      expect([allowed, denied]).toEqual([5, 3])
      expect(quiet.allowed).toBe(true)

      const after = yield* scrape(address)
      expect(counts(after, "api")).toEqual({ allowed, denied })
      expect(counts(after, "quiet")).toEqual({ allowed: 1, denied: 0 })
      // A meter is not a tracked policy, as in the reference.
      expect(samplesOf(after, "throttlekit_allowed_total", { policy: "tokens" })).toEqual([])
      expect(valueOf(after, "throttlekit_limit", { policy: "api" })).toBe(3)
      expect(valueOf(after, "throttlekit_latency_p50_ms", { policy: "api" })).toBeGreaterThanOrEqual(0)
      expect(valueOf(after, "throttlekit_latency_p99_ms", { policy: "api" })).toBeGreaterThanOrEqual(0)
      expect(samplesOf(after, "throttlekit_server_info")).toEqual([{
        name: "throttlekit_server_info",
        labels: { version: packageVersion, region: "eu-west-1", node_id: "node-7", store: "memory", fail_mode: "open" },
        value: 1
      }])
      expect(valueOf(after, "throttlekit_grpc_connections")).toBeGreaterThanOrEqual(1)
      expect(valueOf(after, "throttlekit_watch_streams")).toBe(0)
      expect(samplesOf(after, "throttlekit_rpc_errors_total")).toEqual([])

      // A scrape changes nothing: the counters only move with decisions.
      expect(counts(yield* scrape(address), "api")).toEqual({ allowed, denied })
    })))

  it.live("error answers are counted by method and code; a denial is not an error", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer()
      const address = metricsAddress(server.metrics)
      const limiter = yield* clientOf(server.target)

      const unknown = yield* Effect.flip(limiter.check("nope", "k"))
      expect(unknown._tag).toBe("PolicyNotFound")
      const wrongKind = yield* Effect.flip(limiter.debit("api", "k", 1))
      expect(wrongKind._tag).toBe("OperationNotSupported")
      yield* Effect.flip(limiter.check("nope", "k"))
      yield* Effect.forEach(Array.from({ length: 4 }), () => limiter.check("api", "k"))

      const page = yield* scrape(address)
      expect(samplesOf(page, "throttlekit_rpc_errors_total").map((s) => [s.labels, s.value])).toEqual([
        [{ method: "throttlekit.v1.RateLimiter/Check", code: "NOT_FOUND" }, 2],
        [{ method: "throttlekit.v1.RateLimiter/Debit", code: "UNIMPLEMENTED" }, 1]
      ])
      expect(counts(page, "api")).toEqual({ allowed: 3, denied: 1 })
    })))

  it.live("admissions: slots held now, and denials by the axis that bound them", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer()
      const address = metricsAddress(server.metrics)
      const limiter = yield* clientOf(server.target)

      const holding = yield* Scope.make()
      const first = yield* Scope.extend(limiter.admit("pool", "a"), holding)
      expect(first.held).toBe(true)
      const second = yield* Effect.scoped(limiter.admit("pool", "b"))
      expect([second.decision.allowed, second.bindingAxis]).toEqual([false, "concurrency"])

      const held = yield* scrape(address)
      expect(valueOf(held, "throttlekit_guard_inflight", { guard: "pool" })).toBe(1)
      expect(valueOf(held, "throttlekit_guard_limit", { guard: "pool" })).toBe(1)
      expect(valueOf(held, "throttlekit_guard_fenced", { guard: "pool" })).toBe(0)
      expect(valueOf(held, "throttlekit_denied_by_axis_total", { policy: "pool", axis: "concurrency" })).toBe(1)
      expect(counts(held, "pool")).toEqual({ allowed: 1, denied: 1 })

      yield* Scope.close(holding, Exit.void)
      const released = yield* scrape(address)
      expect(valueOf(released, "throttlekit_guard_inflight", { guard: "pool" })).toBe(0)
    })))

  it.live("/healthz and /health answer 200 ok; other paths 404; other methods 405", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer()
      const address = metricsAddress(server.metrics)
      expect(yield* request(address, "/healthz")).toEqual({
        status: 200,
        type: "text/plain; charset=utf-8",
        body: "ok\n"
      })
      expect((yield* request(address, "/health")).body).toBe("ok\n")
      expect((yield* request(address, "/metrics?x=1")).status).toBe(200)
      expect((yield* request(address, "/")).status).toBe(404)
      expect((yield* request(address, "/metricsz")).status).toBe(404)
      expect((yield* request(address, "/metrics", "POST")).status).toBe(405)
      expect((yield* request(address, "/healthz", "DELETE")).status).toBe(405)
    })))

  it.live("binds loopback by default, and only when asked", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer()
      expect(Option.map(server.metrics, (m) => m.host)).toEqual(Option.some("127.0.0.1"))
      const none = yield* startServer({}, false)
      expect(none.metrics).toEqual(Option.none())
    })))

  it.live("a port already in use fails the layer with MetricsBindError, and the gRPC port is released", () =>
    Effect.scoped(Effect.gen(function*() {
      const taken = yield* Effect.acquireRelease(
        Effect.async<net.Server>((resume) => {
          const blocker = net.createServer()
          blocker.listen(0, "127.0.0.1", () => resume(Effect.succeed(blocker)))
        }),
        (blocker) => Effect.async<void>((resume) => void blocker.close(() => resume(Effect.void)))
      )
      const port = (taken.address() as net.AddressInfo).port
      const error = yield* Effect.flip(Effect.scoped(startServer({ metrics: { port } })))
      expect(error._tag).toBe("MetricsBindError")
      expect(error.message).toContain(`127.0.0.1:${port} for /metrics`)
    })))

  it.live("the listener closes with the server's scope, at once, whatever its clients hold open", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* Scope.extend(startServer(), scope)
      const address = metricsAddress(server.metrics)
      const [host, port] = [
        address.slice(0, address.lastIndexOf(":")),
        Number(address.slice(address.lastIndexOf(":") + 1))
      ]
      // A kept-alive connection after a scrape, and one stuck halfway through its request headers.
      yield* scrape(address)
      const stuck = yield* Effect.async<net.Socket>((resume) => {
        const socket = net.connect(port, host, () => resume(Effect.succeed(socket)))
        socket.on("error", () => {})
      })
      const stuckClosed = Effect.async<void>((resume) => {
        if (stuck.destroyed) return resume(Effect.void)
        stuck.once("close", () => resume(Effect.void))
      })
      stuck.write("GET /metrics HTTP/1.1\r\nHost: x\r\n")

      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(3000)
      yield* stuckClosed.pipe(
        Effect.timeoutFail({ duration: Duration.seconds(2), onTimeout: () => new Error("still open") })
      )
      const refused = yield* Effect.either(request(address, "/healthz"))
      expect(Either.isLeft(refused)).toBe(true)
    }))
})

describe("monitor: false (serve --monitor off)", () => {
  it.live("the Monitor door is not served: its calls answer UNIMPLEMENTED and health does not know it", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ monitor: false })
      expect(server.services).toEqual(["throttlekit.v1.RateLimiter", "throttlekit_effect.admin.v1.RateLimiterAdmin"])
      const raw = yield* rawClient(server.target)
      const snapshot = yield* sendRaw(raw, "/throttlekit.v1.Monitor/GetSnapshot", Buffer.alloc(0))
      expect(snapshot.code).toBe(12) // UNIMPLEMENTED
      const health = yield* sendRaw(raw, `/${Health.typeName}/Check`, healthRequest("throttlekit.v1.Monitor"))
      expect(health.code).toBe(5) // NOT_FOUND
      const ours = yield* sendRaw(raw, `/${Health.typeName}/Check`, healthRequest("throttlekit.v1.RateLimiter"))
      expect(ours.code).toBe(0)

      // With /metrics asked for, decisions are still counted there.
      const limiter = yield* clientOf(server.target)
      yield* Effect.forEach(Array.from({ length: 4 }), () => limiter.check("api", "k"))
      expect(counts(yield* scrape(metricsAddress(server.metrics)), "api")).toEqual({ allowed: 3, denied: 1 })
    })))

  it.live("without /metrics either, decisions are not tracked at all", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ monitor: false }, false)
      const limiter = yield* clientOf(server.target)
      yield* Effect.forEach(Array.from({ length: 4 }), () => limiter.check("api", "k"))
      const snapshot = yield* server.hub.snapshot
      expect(snapshot.policies.find((p) => p.name === "api")).toMatchObject({ allowedTotal: 0, deniedTotal: 0 })
    })))

  it.effect("a door left out is not in the loopback warning", () =>
    Effect.gen(function*() {
      const policies = yield* PolicyFile.parse(config, "test")
      expect(ThrottleKitServer.warnings({ policies, admin: false }, "0.0.0.0")).toHaveLength(1)
      expect(ThrottleKitServer.warnings({ policies, monitor: false, admin: false }, "0.0.0.0")).toEqual([])
      expect(ThrottleKitServer.warnings({ policies, monitor: false }, "0.0.0.0")).toEqual([
        "warning: Admin answers loopback callers only (remote calls get UNAUTHENTICATED); pass --admin-secret to allow remote callers"
      ])
    }))
})

describe("serve --metrics-port (the CLI in its own process)", () => {
  it.live(
    "--metrics-port 0 --region --node-id --monitor off: the startup line names the listener; the page labels the server",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const file = tempFile("policies.yaml", config)
        const cli = yield* startCli([
          "--config",
          file,
          "--port",
          "0",
          "--metrics-port",
          "0",
          "--region",
          "ap-south-1",
          "--node-id",
          "pod-3",
          "--monitor",
          "off"
        ])
        const match = /, monitor=off, metrics=(127\.0\.0\.1:\d+)\]/.exec(cli.startupLine)
        expect(match).not.toBeNull()
        const address = match![1]!
        expect(yield* request(address, "/healthz")).toMatchObject({ status: 200, body: "ok\n" })
        const limiter: RateLimiterService = yield* clientOf(cli.address)
        yield* Effect.forEach(Array.from({ length: 5 }), () => limiter.check("api", "k"))
        const page = yield* scrape(address)
        expect(counts(page, "api")).toEqual({ allowed: 3, denied: 2 })
        expect(samplesOf(page, "throttlekit_server_info")[0]!.labels).toEqual({
          version: packageVersion,
          region: "ap-south-1",
          node_id: "pod-3",
          store: "memory",
          fail_mode: "open"
        })
        const ended = yield* cli.stop
        expect(ended.code).toBe(0)
      })),
    60_000
  )
})

describe("store outages (a Redis store that goes down)", () => {
  it.live(
    "checks answered by the fail mode are counted per policy; other calls' UNAVAILABLE as errors",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const server = yield* startServer({ store: { kind: "redis", redis: redis.url } })
        const address = metricsAddress(server.metrics)
        const limiter = yield* clientOf(server.target)
        expect((yield* limiter.check("api", "k")).allowed).toBe(true)

        yield* Effect.promise(() => redis.stop())
        const one = yield* limiter.check("api", "k")
        const many = yield* limiter.checkMany("api", ["a", "b"])
        expect([one, ...many].map((d) => [d.allowed, d.resetAt])).toEqual([[true, 0], [true, 0], [true, 0]])
        const debit = yield* Effect.flip(limiter.debit("tokens", "k", 1))
        expect(debit._tag).toBe("ServiceUnavailable")

        const page = yield* scrape(address)
        expect(samplesOf(page, "throttlekit_store_outage_answers_total").map((s) => [s.labels, s.value])).toEqual([
          [{ policy: "api", answer: "allowed" }, 3]
        ])
        expect(valueOf(page, "throttlekit_rpc_errors_total", {
          method: "throttlekit.v1.RateLimiter/Debit",
          code: "UNAVAILABLE"
        })).toBe(1)
        // An outage answer is not a decision: the counters hold the one real check.
        expect(counts(page, "api")).toEqual({ allowed: 1, denied: 0 })
        expect(samplesOf(page, "throttlekit_server_info")[0]!.labels.store).toBe("redis")
      })),
    60_000
  )
})
