/**
 * The per-request decision on its own (no server): one span per decision carrying the policy and the
 * outcome, and the outcomes themselves, over the real Memory backend; and the policy resolved when the
 * middleware is built (or, where only the server can tell, reported once at the first request).
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Tracer } from "effect"
import { PolicyNotFound } from "../../src/Errors.js"
import { compile } from "../../src/http/decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"

const policy: LimiterPolicy = {
  kind: "limiter",
  name: "traced",
  prefix: "traced",
  maxKeys: 100,
  strategy: { kind: "gcra", limit: 1, periodMs: 3_600_000, burst: 1 }
}

const unused = Effect.dieMessage("not used by this test")

/** A door whose server knows the policies (as the Service door): "nope" is unknown there. */
const remote: RateLimiterService = {
  backend: "service",
  policies: undefined,
  resolve: () => Effect.succeed(false),
  check: (name) => Effect.fail(new PolicyNotFound({ policy: name, configured: ["traced"] })),
  checkMany: () => unused,
  checkAll: () => unused,
  peek: () => unused,
  forecast: () => unused,
  debit: () => unused,
  checkWithin: () => unused,
  debitWithin: () => unused,
  admit: () => unused,
  leases: { ttlMs: 2000, acquire: () => unused, release: () => unused, heartbeat: () => unused }
}

const fromPeer = (peer: string) =>
  HttpServerRequest.fromWeb(new Request("http://local/x")).modify({ remoteAddress: peer })

describe("decision", () => {
  it.scoped("one span per decision, named and annotated with the policy, cost and outcome", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.Span> = []
      const native = yield* Effect.tracer
      const recording = Tracer.make({
        context: native.context,
        span: (...args) => {
          const span = native.span(...args)
          spans.push(span)
          return span
        }
      })
      const limiter = yield* compile({ policy, cost: 1 })
      const first = yield* limiter.decide(fromPeer("192.0.2.1")).pipe(Effect.withTracer(recording))
      const second = yield* limiter.decide(fromPeer("192.0.2.1")).pipe(Effect.withTracer(recording))
      expect(first._tag).toBe("Allowed")
      expect(second._tag).toBe("Denied")
      const decisions = spans.filter((span) => span.name === "throttlekit.http.decide")
      expect(decisions).toHaveLength(2)
      expect(decisions.map((span) => span.attributes.get("throttlekit.outcome"))).toEqual(["allowed", "denied"])
      for (const span of decisions) {
        expect(span.attributes.get("throttlekit.policy")).toBe("traced")
        expect(span.attributes.get("throttlekit.mode")).toBe("check")
        expect(span.attributes.get("throttlekit.cost")).toBe(1)
      }
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: [policy] }))))

  it.scoped("an unknown policy or the wrong kind is a startup error where the door knows its policies", () =>
    Effect.gen(function*() {
      expect(yield* Effect.flip(compile({ policy: "nope" }))).toMatchObject({ _tag: "PolicyNotFound", policy: "nope" })
      expect(yield* Effect.flip(compile({ policy: "traced", admit: true }))).toMatchObject({
        _tag: "OperationNotSupported",
        policy: "traced",
        operation: "admit"
      })
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: [policy] }))))

  it.scoped("where only the server knows the policies, an unknown one is a fault, logged once as an error", () =>
    Effect.gen(function*() {
      const errors: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === LogLevel.Error) errors.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const open = yield* compile({ policy: "nope" })
      const closed = yield* compile({ policy: "nope", failMode: "closed" })
      const logged = Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      const a = yield* open.decide(fromPeer("192.0.2.2")).pipe(logged)
      const again = yield* open.decide(fromPeer("192.0.2.2")).pipe(logged)
      const b = yield* closed.decide(fromPeer("192.0.2.2")).pipe(logged)
      expect([a._tag, again._tag, b._tag]).toEqual(["FailedOpen", "FailedOpen", "FailedClosed"])
      if (a._tag === "FailedOpen") expect(a.error._tag).toBe("PolicyNotFound")
      // One line per middleware, not one per request.
      expect(errors).toHaveLength(2)
      expect(errors[0]).toContain("logged once")
    }).pipe(Effect.provide(Layer.succeed(RateLimiter, remote))))
})
