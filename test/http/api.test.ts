/**
 * Rate limiting an `HttpApi`: the `RateLimit` middleware tag on a group, a second tag of the app's own on
 * one endpoint, and the plain middleware over a whole API through `HttpApiBuilder.middleware`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as HttpRateLimitApi from "../../src/http/api.js"
import * as HttpRateLimit from "../../src/http/middleware.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { burstPolicy, HOUR, request, serveLayer, slotsPolicy } from "./support.js"

/** An app-defined second rate-limit tag, for a different policy on one endpoint. */
class ReportLimit extends HttpApiMiddleware.Tag<ReportLimit>()("test/ReportLimit", {
  failure: HttpRateLimitApi.RateLimitFailure
}) {}

class Items extends HttpApiGroup.make("items")
  .add(HttpApiEndpoint.get("list", "/items").addSuccess(Schema.Array(Schema.String)))
  .add(HttpApiEndpoint.get("report", "/report").addSuccess(Schema.String).middleware(ReportLimit))
  .middleware(HttpRateLimitApi.RateLimit)
{}

class Health extends HttpApiGroup.make("health").add(HttpApiEndpoint.get("ping", "/ping").addSuccess(Schema.String)) {}

class Api extends HttpApi.make("api").add(Items).add(Health) {}

const ItemsLive = HttpApiBuilder.group(Api, "items", (handlers) =>
  handlers
    .handle("list", () => Effect.succeed(["a", "b"]))
    .handle("report", () =>
      // While the handler runs, the endpoint's admission holds the only slot: a probe cannot get it.
      Effect.scoped(
        Effect.flatMap(RateLimiter, (limiter) => limiter.admit("api-reports", "probe"))
      ).pipe(
        Effect.map((probe) => (probe.held ? "slot free" : "slot busy")),
        Effect.orDie
      )))

const HealthLive = HttpApiBuilder.group(
  Api,
  "health",
  (handlers) => handlers.handle("ping", () => Effect.succeed("pong"))
)

const items = burstPolicy("api-items", 2)
const reports = slotsPolicy("api-reports", 1)
const whole = burstPolicy("api-whole", 3)

const Backend = MemoryBackend.layer({ policies: [items, reports, whole], leaseTtlMs: HOUR })

const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([ItemsLive, HealthLive]),
  Layer.provide(HttpRateLimitApi.layer({ policy: items })),
  Layer.provide(Layer.effect(ReportLimit, HttpRateLimitApi.makeMiddleware({ policy: reports, admit: true })))
)

describe("HttpRateLimitApi", () => {
  it.scopedLive("a group's RateLimit tag: stamped 200s, then a 429 TooManyRequests with Retry-After", () =>
    Effect.gen(function*() {
      const url = yield* serveLayer(HttpApiBuilder.serve().pipe(Layer.provide(ApiLive)))
      for (const remaining of [1, 0]) {
        const reply = yield* request(`${url}/items`)
        expect(reply.status).toBe(200)
        expect(JSON.parse(reply.body)).toEqual(["a", "b"])
        expect(reply.headers.get("ratelimit-policy")).toBe("\"api-items\";q=2;w=3600")
        expect(reply.headers.get("ratelimit")).toMatch(new RegExp(`^"api-items";r=${remaining};t=\\d+$`))
      }
      const denied = yield* request(`${url}/items`)
      expect(denied.status).toBe(429)
      const retryAfter = Number(denied.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThan(1700)
      expect(denied.headers.get("ratelimit")).toMatch(/^"api-items";r=0;/)
      expect(JSON.parse(denied.body)).toEqual({ _tag: "TooManyRequests", policy: "api-items", retryAfter })

      // The other group carries no middleware: never limited, never stamped.
      const ping = yield* request(`${url}/ping`)
      expect(ping.status).toBe(200)
      expect(ping.headers.get("ratelimit")).toBeNull()

      // The report endpoint runs both tags: the group's (denied by now) decides first.
      expect((yield* request(`${url}/report`)).status).toBe(429)
    }).pipe(Effect.provide(Backend)))

  it.scopedLive("a request costing more than the capacity fails with CostExceedsCapacity: 413, no Retry-After", () =>
    Effect.gen(function*() {
      const costly = HttpApiBuilder.api(Api).pipe(
        Layer.provide([ItemsLive, HealthLive]),
        Layer.provide(HttpRateLimitApi.layer({ policy: items, cost: 3 })),
        Layer.provide(Layer.effect(ReportLimit, HttpRateLimitApi.makeMiddleware({ policy: reports, admit: true })))
      )
      const url = yield* serveLayer(HttpApiBuilder.serve().pipe(Layer.provide(costly)))
      const reply = yield* request(`${url}/items`)
      expect(reply.status).toBe(413)
      expect(reply.headers.get("retry-after")).toBeNull()
      expect(JSON.parse(reply.body)).toEqual({ _tag: "CostExceedsCapacity", policy: "api-items", cost: 3, capacity: 2 })
    }).pipe(Effect.provide(Backend)))

  it.scopedLive("an endpoint's admission tag holds its slot in the request scope and frees it after", () =>
    Effect.gen(function*() {
      const url = yield* serveLayer(HttpApiBuilder.serve().pipe(Layer.provide(ApiLive)))
      const limiter = yield* RateLimiter
      const first = yield* request(`${url}/report`)
      expect(first.status).toBe(200)
      expect(JSON.parse(first.body)).toBe("slot busy")
      // Both limits show, as the items of one list.
      const items = (header: string) => (first.headers.get(header) ?? "").split(", ").sort()
      expect(items("ratelimit-policy")).toEqual(["\"api-items\";q=2;w=3600", "\"api-reports\";q=1"])
      const [itemsState, reportsState] = items("ratelimit")
      expect(itemsState).toMatch(/^"api-items";r=1;t=\d+$/)
      expect(reportsState).toMatch(/^"api-reports";r=0;t=\d+$/)
      // The slot was released when the request ended: an admission now gets it.
      const again = yield* Effect.scoped(limiter.admit("api-reports", "127.0.0.1"))
      expect(again.held).toBe(true)
    }).pipe(Effect.provide(Backend)))

  it.scopedLive("a whole HttpApi through HttpApiBuilder.middleware and the plain middleware", () =>
    Effect.gen(function*() {
      const limited = HttpApiBuilder.middleware(HttpRateLimit.make({ policy: whole, headers: "legacy" }))
      const url = yield* serveLayer(
        HttpApiBuilder.serve().pipe(Layer.provide(limited), Layer.provide(ApiLive))
      )
      for (const remaining of ["2", "1", "0"]) {
        const ping = yield* request(`${url}/ping`)
        expect(ping.status).toBe(200)
        expect(ping.headers.get("x-ratelimit-remaining")).toBe(remaining)
      }
      const denied = yield* request(`${url}/ping`)
      expect(denied.status).toBe(429)
      expect(JSON.parse(denied.body)).toMatchObject({ error: "rate_limited", policy: "api-whole" })
    }).pipe(Effect.provide(Backend)))
})
