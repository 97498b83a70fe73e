/**
 * Fail open and fail closed with the backend really down: the Service door pointed at a closed loopback
 * port, and the Redis door over a private `redis-server` that is killed mid-run and started again.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Metric, Schedule } from "effect"
import { createServer } from "node:net"
import * as Metrics from "../../src/http/metrics.js"
import * as HttpRateLimit from "../../src/http/middleware.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { redisServer } from "../support/redisServer.js"
import { burstPolicy, request, serve } from "./support.js"

const app = HttpRouter.empty.pipe(HttpRouter.get("/", HttpServerResponse.text("ok")))

/** A loopback port nothing listens on: bound, then released. */
const closedPort = Effect.async<number>((resume) => {
  const probe = createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

/** The Service door at a port nothing answers on: every call fails with `ServiceUnavailable`. */
const deadService = Layer.unwrapEffect(
  Effect.map(closedPort, (port) => ServiceBackend.layer({ target: `127.0.0.1:${port}`, deadline: "2 seconds" }))
)

/** Collects the messages of warnings logged while `effect` runs. */
const withWarnings = (warnings: Array<string>) =>
  Effect.provide(Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
  ))

const faultCount = (policy: string, mode: "open" | "closed", error: string) =>
  Effect.map(
    Metric.value(
      Metrics.backendFaults.pipe(
        Metric.tagged("policy", policy),
        Metric.tagged("mode", mode),
        Metric.tagged("error", error)
      )
    ),
    (state) => state.count
  )

describe("fail modes with the backend down (Service door at a closed port)", () => {
  it.scopedLive("fail open (the default): the request goes through, unstamped, logged and counted", () => {
    const warnings: Array<string> = []
    return Effect.gen(function*() {
      const before = yield* faultCount("svc-open", "open", "ServiceUnavailable")
      const url = yield* serve(app.pipe(yield* HttpRateLimit.make({ policy: burstPolicy("svc-open", 1) })))
      for (let i = 0; i < 3; i++) {
        const reply = yield* request(url)
        expect(reply.status).toBe(200)
        expect(reply.body).toBe("ok")
        expect(reply.headers.get("ratelimit")).toBeNull()
        expect(reply.headers.get("retry-after")).toBeNull()
      }
      expect((yield* faultCount("svc-open", "open", "ServiceUnavailable")) - before).toBe(3)
      expect(warnings.filter((w) => w.includes("failing open"))).toHaveLength(3)
    }).pipe(Effect.provide(deadService), withWarnings(warnings))
  })

  it.scopedLive("fail closed: 503 with a JSON body, the handler never runs", () => {
    let handled = 0
    const counting = HttpRouter.empty.pipe(
      HttpRouter.get("/", Effect.sync(() => (handled++, HttpServerResponse.text("ok"))))
    )
    return Effect.gen(function*() {
      const before = yield* faultCount("svc-closed", "closed", "ServiceUnavailable")
      const limited = yield* HttpRateLimit.make({ policy: burstPolicy("svc-closed", 1), failMode: "closed" })
      const url = yield* serve(counting.pipe(limited))
      const reply = yield* request(url)
      expect(reply.status).toBe(503)
      expect(JSON.parse(reply.body)).toEqual({ error: "rate_limiter_unavailable", policy: "svc-closed" })
      expect(handled).toBe(0)
      expect((yield* faultCount("svc-closed", "closed", "ServiceUnavailable")) - before).toBe(1)
    }).pipe(Effect.provide(deadService))
  })

  it.scopedLive("admission fails open too: the handler runs without a slot", () => {
    return Effect.gen(function*() {
      const url = yield* serve(app.pipe(yield* HttpRateLimit.make({ policy: "svc-slots", admit: true })))
      expect((yield* request(url)).status).toBe(200)
    }).pipe(Effect.provide(deadService))
  })
})

describe("fail modes over Redis going down and coming back", () => {
  it.scopedLive("stamped while Redis is up, open or closed while it is down, stamped again after", () => {
    const open = burstPolicy("redis-open", 100)
    const closed = burstPolicy("redis-closed", 100)
    return Effect.gen(function*() {
      const redis = yield* redisServer
      const limiter = yield* Layer.build(
        RedisBackend.layer({ policies: [open, closed], redis: redis.url, timeoutMs: 500 })
      )
      const [failOpen, failClosed] = yield* Effect.all([
        HttpRateLimit.make({ policy: open }),
        HttpRateLimit.make({ policy: closed, failMode: "closed" })
      ]).pipe(Effect.provide(limiter))
      const openUrl = yield* serve(app.pipe(failOpen))
      const closedUrl = yield* serve(app.pipe(failClosed))

      const up = yield* request(openUrl)
      expect(up.status).toBe(200)
      expect(up.headers.get("ratelimit")).toMatch(/^"redis-open";r=99;/)
      expect((yield* request(closedUrl)).status).toBe(200)

      yield* Effect.promise(() => redis.stop())
      const downOpen = yield* request(openUrl)
      expect(downOpen.status).toBe(200)
      expect(downOpen.headers.get("ratelimit")).toBeNull()
      expect((yield* request(closedUrl)).status).toBe(503)

      yield* Effect.promise(() => redis.start())
      // The client reconnects on its own; the first calls after the restart may still fail.
      const back = yield* request(closedUrl).pipe(
        Effect.filterOrFail((reply) => reply.status === 200, (reply) => new Error(`still ${reply.status}`)),
        Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(100))))
      )
      expect(back.status).toBe(200)
      // A fresh Redis (persistence off): the budget starts over.
      expect(back.headers.get("ratelimit")).toMatch(/^"redis-closed";r=\d+;/)
    })
  })
})
