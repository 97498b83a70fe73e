/**
 * The per-request decision on its own (no server): one span per decision carrying the policy and the
 * outcome, and the outcomes themselves, over the real Memory backend.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Tracer } from "effect"
import { compile } from "../../src/http/decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"

const policy: LimiterPolicy = {
  kind: "limiter",
  name: "traced",
  prefix: "traced",
  maxKeys: 100,
  strategy: { kind: "gcra", limit: 1, periodMs: 3_600_000, burst: 1 }
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

  it.scoped("an unknown policy is a fault: FailedOpen by default, FailedClosed when asked", () =>
    Effect.gen(function*() {
      const open = yield* compile({ policy: "nope" })
      const closed = yield* compile({ policy: "nope", failMode: "closed" })
      const a = yield* open.decide(fromPeer("192.0.2.2"))
      const b = yield* closed.decide(fromPeer("192.0.2.2"))
      expect(a._tag).toBe("FailedOpen")
      expect(b._tag).toBe("FailedClosed")
      if (a._tag === "FailedOpen") expect(a.error._tag).toBe("PolicyNotFound")
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: [policy] }))))
})
