/**
 * The router / app middleware against a real HTTP server on loopback, real `fetch` requests, and the
 * real Memory backend.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Metric, Queue, Schedule } from "effect"
import { InvalidArgument } from "../../src/Errors.js"
import { byHeader } from "../../src/http/keying.js"
import * as Metrics from "../../src/http/metrics.js"
import * as HttpRateLimit from "../../src/http/middleware.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { Policy } from "../../src/Policy.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { burstPolicy, HOUR, request, serve, slotsPolicy } from "./support.js"

const ok = HttpRouter.empty.pipe(
  HttpRouter.get("/", HttpServerResponse.text("ok")),
  HttpRouter.get("/cheap", HttpServerResponse.text("cheap")),
  HttpRouter.get("/expensive", HttpServerResponse.text("expensive"))
)

/**
 * The real Memory backend. Leases live an hour, so a slot is only ever freed by a release (never by the
 * backend reclaiming an expired lease while a test waits).
 */
const withBackend = (...policies: Array<Policy>) => Effect.provide(MemoryBackend.layer({ policies, leaseTtlMs: HOUR }))

/** The current count of a counter series. */
const countOf = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

describe("HttpRateLimit", () => {
  it.scopedLive("IETF headers on allowed responses; 429 with Retry-After and the same headers when denied", () => {
    const policy = burstPolicy("ietf", 3)
    return Effect.gen(function*() {
      const url = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy })))
      for (const remaining of [2, 1, 0]) {
        const reply = yield* request(url)
        expect(reply.status).toBe(200)
        expect(reply.body).toBe("ok")
        expect(reply.headers.get("ratelimit-policy")).toBe("\"ietf\";q=3;w=3600")
        const rateLimit = reply.headers.get("ratelimit") ?? ""
        expect(rateLimit).toMatch(new RegExp(`^"ietf";r=${remaining};t=\\d+$`))
        const t = Number(rateLimit.split("t=")[1])
        expect(t).toBeGreaterThan(0)
        expect(t).toBeLessThanOrEqual(3600)
        expect(reply.headers.get("retry-after")).toBeNull()
        expect(reply.headers.get("x-ratelimit-limit")).toBeNull()
      }
      const denied = yield* request(url)
      expect(denied.status).toBe(429)
      expect(denied.headers.get("ratelimit-policy")).toBe("\"ietf\";q=3;w=3600")
      expect(denied.headers.get("ratelimit")).toMatch(/^"ietf";r=0;t=\d+$/)
      // GCRA: 3 per hour, so the next unit comes back in 20 minutes (1200 s, rounded up).
      const retryAfter = Number(denied.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThan(1190)
      expect(retryAfter).toBeLessThanOrEqual(1200)
      expect(JSON.parse(denied.body)).toEqual({ error: "rate_limited", policy: "ietf", retryAfter })
    }).pipe(withBackend(policy))
  })

  it.scopedLive("legacy X-RateLimit-* headers, with the reset as epoch seconds", () => {
    const policy = burstPolicy("legacy", 2)
    return Effect.gen(function*() {
      const url = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy, headers: "legacy" })))
      const before = Math.floor(Date.now() / 1000)
      const first = yield* request(url)
      expect(first.status).toBe(200)
      expect(first.headers.get("x-ratelimit-limit")).toBe("2")
      expect(first.headers.get("x-ratelimit-remaining")).toBe("1")
      const reset = Number(first.headers.get("x-ratelimit-reset"))
      expect(reset).toBeGreaterThanOrEqual(before)
      expect(reset).toBeLessThanOrEqual(before + 3601)
      expect(first.headers.get("ratelimit")).toBeNull()
      expect(first.headers.get("ratelimit-policy")).toBeNull()
      expect((yield* request(url)).headers.get("x-ratelimit-remaining")).toBe("0")
      const denied = yield* request(url)
      expect(denied.status).toBe(429)
      expect(denied.headers.get("x-ratelimit-limit")).toBe("2")
      expect(denied.headers.get("x-ratelimit-remaining")).toBe("0")
      expect(Number(denied.headers.get("retry-after"))).toBeGreaterThan(1700)
      expect(denied.headers.get("ratelimit")).toBeNull()
    }).pipe(withBackend(policy))
  })

  it.scopedLive("a policy given by name: w is left out unless a window is given", () => {
    const bare = burstPolicy("by-name", 5)
    const windowed = burstPolicy("by-name-window", 5)
    return Effect.gen(function*() {
      const bareUrl = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy: "by-name" })))
      expect((yield* request(bareUrl)).headers.get("ratelimit-policy")).toBe("\"by-name\";q=5")
      const windowedUrl = yield* serve(
        ok.pipe(yield* HttpRateLimit.make({ policy: "by-name-window", window: "90 seconds" }))
      )
      expect((yield* request(windowedUrl)).headers.get("ratelimit-policy")).toBe("\"by-name-window\";q=5;w=90")
    }).pipe(withBackend(bare, windowed))
  })

  it.scopedLive("an untrusted peer's X-Forwarded-For is ignored: the peer address is the key", () => {
    const policy = burstPolicy("untrusted", 1)
    return Effect.gen(function*() {
      const url = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy })))
      const first = yield* request(url, { headers: { "x-forwarded-for": "203.0.113.1" } })
      expect(first.status).toBe(200)
      const second = yield* request(url, { headers: { "x-forwarded-for": "203.0.113.2" } })
      expect(second.status).toBe(429)
      const limiter = yield* RateLimiter
      expect((yield* limiter.peek("untrusted", "127.0.0.1")).remaining).toBe(0)
      expect((yield* limiter.peek("untrusted", "203.0.113.1")).remaining).toBe(1)
    }).pipe(withBackend(policy))
  })

  it.scopedLive("a trusted peer's X-Forwarded-For is honoured: the right-most untrusted hop is the key", () => {
    const policy = burstPolicy("trusted", 1)
    return Effect.gen(function*() {
      const limited = yield* HttpRateLimit.make({ policy, trustedProxies: ["loopback", "10.0.0.0/8"] })
      const url = yield* serve(ok.pipe(limited))
      const xff = (value: string) => request(url, { headers: { "x-forwarded-for": value } })
      expect((yield* xff("203.0.113.1")).status).toBe(200)
      expect((yield* xff("203.0.113.2")).status).toBe(200)
      // A client-written left-most hop is skipped: the trusted proxy 10.1.2.3 saw 198.51.100.7 connect.
      expect((yield* xff("6.6.6.6, 198.51.100.7, 10.1.2.3")).status).toBe(200)
      // Spoofing a fresh left-most hop does not buy a fresh budget.
      expect((yield* xff("7.7.7.7, 203.0.113.1")).status).toBe(429)
      const limiter = yield* RateLimiter
      for (const key of ["203.0.113.1", "203.0.113.2", "198.51.100.7"]) {
        expect((yield* limiter.peek("trusted", key)).remaining).toBe(0)
      }
      for (const key of ["127.0.0.1", "6.6.6.6", "7.7.7.7", "10.1.2.3"]) {
        expect((yield* limiter.peek("trusted", key)).remaining).toBe(1)
      }
      // No header at all: the (trusted) peer itself.
      expect((yield* request(url)).status).toBe(200)
      expect((yield* limiter.peek("trusted", "127.0.0.1")).remaining).toBe(0)
    }).pipe(withBackend(policy))
  })

  it.scopedLive("with forwardedHeader: \"forwarded\", the Forwarded header is read and X-Forwarded-For is not", () => {
    const policy = burstPolicy("forwarded", 1)
    return Effect.gen(function*() {
      const limited = yield* HttpRateLimit.make({ policy, trustedProxies: ["127.0.0.1"], forwardedHeader: "forwarded" })
      const url = yield* serve(ok.pipe(limited))
      const reply = yield* request(url, {
        headers: { forwarded: "for=192.0.2.9;proto=https, for=\"[2001:db8::7]:4711\"", "x-forwarded-for": "1.1.1.1" }
      })
      expect(reply.status).toBe(200)
      const limiter = yield* RateLimiter
      expect((yield* limiter.peek("forwarded", "2001:db8::7")).remaining).toBe(0)
      expect((yield* limiter.peek("forwarded", "1.1.1.1")).remaining).toBe(1)
      expect((yield* limiter.peek("forwarded", "192.0.2.9")).remaining).toBe(1)
    }).pipe(withBackend(policy))
  })

  it.scopedLive("a custom key function (an API key header) gives each key its own budget", () => {
    const policy = burstPolicy("api-key", 1)
    return Effect.gen(function*() {
      const url = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy, key: byHeader("X-Api-Key") })))
      const as = (key: string) => request(url, { headers: { "x-api-key": key } })
      expect((yield* as("alpha")).status).toBe(200)
      expect((yield* as("beta")).status).toBe(200)
      expect((yield* as("alpha")).status).toBe(429)
      // Without the header, the client address is the fallback key.
      expect((yield* request(url)).status).toBe(200)
      const limiter = yield* RateLimiter
      expect((yield* limiter.peek("api-key", "x-api-key:alpha")).remaining).toBe(0)
      expect((yield* limiter.peek("api-key", "127.0.0.1")).remaining).toBe(0)
    }).pipe(withBackend(policy))
  })

  it.scopedLive("a key function may be effectful (here it reads a user id header through an Effect)", () => {
    const policy = burstPolicy("user-id", 1)
    return Effect.gen(function*() {
      const limited = yield* HttpRateLimit.make({
        policy,
        key: (request, address) => Effect.succeed(`user:${request.headers["x-user"] ?? address}`)
      })
      const url = yield* serve(ok.pipe(limited))
      expect((yield* request(url, { headers: { "x-user": "7" } })).status).toBe(200)
      expect((yield* request(url, { headers: { "x-user": "7" } })).status).toBe(429)
      expect((yield* request(url, { headers: { "x-user": "8" } })).status).toBe(200)
    }).pipe(withBackend(policy))
  })

  it.scopedLive("cost per route: a cost function by path, and a fixed cost on one route", () => {
    const policy = burstPolicy("cost", 10)
    const perRoute = burstPolicy("cost-route", 10)
    return Effect.gen(function*() {
      const byPath = yield* HttpRateLimit.make({
        policy,
        cost: (request) => request.url.startsWith("/expensive") ? 5 : 1
      })
      const url = yield* serve(ok.pipe(byPath))
      const cheap = yield* request(`${url}/cheap`)
      expect(cheap.headers.get("ratelimit")).toMatch(/r=9;/)
      const expensive = yield* request(`${url}/expensive`)
      expect(expensive.status).toBe(200)
      expect(expensive.headers.get("ratelimit")).toMatch(/r=4;/)
      expect((yield* request(`${url}/expensive`)).status).toBe(429)
      expect((yield* request(`${url}/cheap`)).headers.get("ratelimit")).toMatch(/r=3;/)

      // The middleware applied to a single route handler, with a fixed cost.
      const costly = yield* HttpRateLimit.make({ policy: perRoute, cost: 4 })
      const router = HttpRouter.empty.pipe(
        HttpRouter.get("/free", HttpServerResponse.text("free")),
        HttpRouter.get("/paid", costly(HttpServerResponse.text("paid")))
      )
      const routeUrl = yield* serve(router)
      const free = yield* request(`${routeUrl}/free`)
      expect(free.headers.get("ratelimit")).toBeNull()
      expect((yield* request(`${routeUrl}/paid`)).headers.get("ratelimit")).toMatch(/r=6;/)
      expect((yield* request(`${routeUrl}/paid`)).headers.get("ratelimit")).toMatch(/r=2;/)
      const denied = yield* request(`${routeUrl}/paid`)
      expect(denied.status).toBe(429)
      expect(denied.headers.get("ratelimit")).toMatch(/r=2;/)
    }).pipe(withBackend(policy, perRoute))
  })

  it.scopedLive("a cost above the capacity is a 413 without Retry-After, in either fail mode, spending nothing", () => {
    const policy = burstPolicy("too-costly", 3)
    return Effect.gen(function*() {
      for (const failMode of ["open", "closed"] as const) {
        const limited = yield* HttpRateLimit.make({
          policy,
          failMode,
          key: () => Effect.succeed(failMode),
          cost: (request) => request.url.startsWith("/expensive") ? 4 : 3
        })
        const url = yield* serve(ok.pipe(limited))
        const tooCostly = yield* request(`${url}/expensive`)
        expect(tooCostly.status).toBe(413)
        expect(tooCostly.headers.get("retry-after")).toBeNull()
        expect(JSON.parse(tooCostly.body)).toEqual({
          error: "cost_exceeds_capacity",
          policy: "too-costly",
          cost: 4,
          capacity: 3
        })
        // Nothing was spent: the whole burst still passes, then a cost within it is an ordinary 429.
        const whole = yield* request(`${url}/cheap`)
        expect([failMode, whole.status]).toEqual([failMode, 200])
        expect(whole.headers.get("ratelimit")).toMatch(/r=0;/)
        const denied = yield* request(`${url}/cheap`)
        expect(denied.status).toBe(429)
        expect(denied.headers.get("retry-after")).not.toBeNull()
      }
    }).pipe(withBackend(policy))
  })

  it.scopedLive("bad options fail with InvalidArgument before anything is served", () => {
    const policy = burstPolicy("bad-options", 1)
    return Effect.gen(function*() {
      const proxy = yield* Effect.flip(HttpRateLimit.make({ policy, trustedProxies: ["10.0.0.0/33"] }))
      expect(proxy).toBeInstanceOf(InvalidArgument)
      expect(proxy).toMatchObject({ argument: "trustedProxies" })
      const notAnAddress = yield* Effect.flip(HttpRateLimit.make({ policy, trustedProxies: ["proxy.internal"] }))
      expect(notAnAddress.message).toContain("proxy.internal")
      const cost = yield* Effect.flip(HttpRateLimit.make({ policy, cost: -1 }))
      expect(cost).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
      const window = yield* Effect.flip(HttpRateLimit.make({ policy: "bad-options", window: "0 seconds" }))
      expect(window).toMatchObject({ _tag: "InvalidArgument", argument: "window" })
      const name = yield* Effect.flip(HttpRateLimit.make({ policy: "" }))
      expect(name).toMatchObject({ _tag: "InvalidArgument", argument: "policy" })
    }).pipe(withBackend(policy))
  })

  it.scopedLive("metrics: allowed and denied counters per policy, and the latency histogram, move", () => {
    const policy = burstPolicy("metered", 2)
    return Effect.gen(function*() {
      const allowed = Metrics.allowed.pipe(Metric.tagged("policy", "metered"))
      const denied = Metrics.denied.pipe(Metric.tagged("policy", "metered"))
      const latency = Metrics.decisionLatency.pipe(Metric.tagged("policy", "metered"))
      const otherPolicy = Metrics.allowed.pipe(Metric.tagged("policy", "not-metered"))
      const [allowed0, denied0, other0] = [yield* countOf(allowed), yield* countOf(denied), yield* countOf(otherPolicy)]
      const latency0 = (yield* Metric.value(latency)).count
      const url = yield* serve(ok.pipe(yield* HttpRateLimit.make({ policy })))
      for (let i = 0; i < 5; i++) yield* request(url)
      expect((yield* countOf(allowed)) - allowed0).toBe(2)
      expect((yield* countOf(denied)) - denied0).toBe(3)
      expect((yield* countOf(otherPolicy)) - other0).toBe(0)
      expect((yield* Metric.value(latency)).count - latency0).toBe(5)
    }).pipe(withBackend(policy))
  })

  describe("admission around a handler", () => {
    /** A router whose `/hold` handler announces itself and then waits forever (until interrupted). */
    const holdingRouter = (entered: Queue.Queue<void>, interrupted: Deferred.Deferred<void>) =>
      HttpRouter.empty.pipe(
        HttpRouter.get(
          "/hold",
          Effect.zipRight(
            Queue.offer(entered, undefined),
            Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
          )
        ),
        HttpRouter.get("/quick", HttpServerResponse.text("quick")),
        HttpRouter.get("/fail", Effect.die("handler defect"))
      )

    /** Retries `/quick` until it is allowed (the release lands just after the handler's interruption). */
    const untilAllowed = (url: string) =>
      request(`${url}/quick`).pipe(
        Effect.filterOrFail((reply) => reply.status === 200, (reply) => new Error(`still ${reply.status}`)),
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(250))))
      )

    it.scopedLive("the slot is held while the handler runs and released when it completes or fails", () => {
      const policy = slotsPolicy("slots-complete", 1)
      return Effect.gen(function*() {
        const entered = yield* Queue.unbounded<void>()
        const interrupted = yield* Deferred.make<void>()
        const limited = yield* HttpRateLimit.make({ policy, admit: true })
        const url = yield* serve(holdingRouter(entered, interrupted).pipe(limited))
        for (let i = 0; i < 3; i++) {
          const reply = yield* request(`${url}/quick`)
          expect(reply.status).toBe(200)
          expect(reply.headers.get("ratelimit-policy")).toBe("\"slots-complete\";q=1")
        }
        expect((yield* request(`${url}/fail`)).status).toBe(500)
        expect((yield* request(`${url}/quick`)).status).toBe(200)

        const holder = yield* Effect.fork(request(`${url}/hold`))
        yield* Queue.take(entered)
        const busy = yield* request(`${url}/quick`)
        expect(busy.status).toBe(429)
        expect(busy.headers.get("retry-after")).toBe("1")
        // Interrupting the fetch aborts it: a disconnect, which also ends the held handler.
        yield* Fiber.interrupt(holder)
        yield* Deferred.await(interrupted)
        expect((yield* untilAllowed(url)).status).toBe(200)
      }).pipe(withBackend(policy))
    })

    it.scopedLive("a client disconnect interrupts the handler and frees the slot", () => {
      const policy = slotsPolicy("slots-disconnect", 1)
      return Effect.gen(function*() {
        const entered = yield* Queue.unbounded<void>()
        const interrupted = yield* Deferred.make<void>()
        const limited = yield* HttpRateLimit.make({ policy, admit: true })
        const url = yield* serve(holdingRouter(entered, interrupted).pipe(limited))

        const controller = new AbortController()
        const holder = yield* Effect.fork(request(`${url}/hold`, { signal: controller.signal }))
        yield* Queue.take(entered)
        expect((yield* request(`${url}/quick`)).status).toBe(429)

        controller.abort()
        const aborted = yield* holder.await
        expect(Exit.isFailure(aborted)).toBe(true)
        yield* Deferred.await(interrupted)
        const after = yield* untilAllowed(url)
        expect(after.status).toBe(200)
        expect(after.body).toBe("quick")
      }).pipe(withBackend(policy))
    })

    it.scopedLive("a plain HttpApp (no router) is made interruptible too, so a disconnect frees the slot", () => {
      const policy = slotsPolicy("slots-plain-app", 1)
      return Effect.gen(function*() {
        const entered = yield* Queue.unbounded<void>()
        const interrupted = yield* Deferred.make<void>()
        const app = Effect.flatMap(HttpServerRequest.HttpServerRequest, (req) =>
          req.url === "/hold"
            ? Effect.zipRight(
              Queue.offer(entered, undefined),
              Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
            )
            : Effect.succeed(HttpServerResponse.text("quick")))
        const url = yield* serve((yield* HttpRateLimit.make({ policy, admit: true }))(app))
        const controller = new AbortController()
        yield* Effect.fork(request(`${url}/hold`, { signal: controller.signal }))
        yield* Queue.take(entered)
        expect((yield* request(`${url}/quick`)).status).toBe(429)
        controller.abort()
        yield* Deferred.await(interrupted)
        expect((yield* untilAllowed(url)).status).toBe(200)
      }).pipe(withBackend(policy))
    })
  })
})
