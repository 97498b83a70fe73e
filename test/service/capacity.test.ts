/**
 * A cost above a policy's capacity through our server: on the wire the server still answers the
 * contract's denial (its front is built with `overCapacity: "deny"`), exactly the denial the contract's
 * arithmetic gives, the same each time and consuming nothing; the Service door turns that denial into
 * `CapacityExceeded` (for a rate limiter, and for an admission denied on its rate axis). Memory and
 * Redis stores behind the server.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect, type Scope } from "effect"
import { CapacityExceeded } from "../../src/Errors.js"
import { unary } from "../../src/grpc/client.js"
import { RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { redisServer } from "../support/redisServer.js"
import { runningServer, type ServerOptions } from "./support.js"

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "burst",
    prefix: "cap-burst",
    maxKeys: 1000,
    // T = 100 ms, tau = 500 ms.
    strategy: { kind: "gcra", limit: 10, periodMs: 1000, burst: 5 }
  },
  {
    kind: "limiter",
    name: "window",
    prefix: "cap-window",
    maxKeys: 1000,
    strategy: { kind: "fixedWindow", limit: 3, windowMs: LONG_WINDOW_MS }
  },
  {
    kind: "admitter",
    name: "unified",
    prefix: "cap-unified",
    maxKeys: 1000,
    concurrency: {
      algorithm: "fixed",
      minLimit: 4,
      maxLimit: 4,
      initialLimit: 4,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 100
    },
    rate: { kind: "tokenBucket", capacity: 2, refillPerSec: 1 }
  }
]

const call = { deadlineMs: 2000 }

const suite = (name: string, server: Effect.Effect<ServerOptions, never, Scope.Scope>) =>
  describe(`a cost above the capacity through our server (${name})`, () => {
    it.live("the wire answers the contract's denial, the same each time, consuming nothing", () =>
      Effect.scoped(Effect.gen(function*() {
        const running = yield* runningServer(yield* server)
        const client = new grpc.Client(running.address, grpc.credentials.createInsecure())
        yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
        const key = `k-${Date.now()}`
        for (let attempt = 0; attempt < 3; attempt++) {
          const response = yield* unary(client, RateLimiterRpc.method.check, { policy: "burst", key, cost: 6n }, call)
          // A fresh key: tat = now, newTat = now + 600, allowAt = now + 100: denied, retry in 100 ms, the
          // whole burst (5) left, which is what the contract's gcra says, and says again.
          const d = response.decision!
          expect([d.allowed, d.limit, d.remaining, d.retryAfterMs]).toEqual([false, 5n, 5n, 100n])
        }
        const many = yield* unary(client, RateLimiterRpc.method.checkMany, {
          policy: "window",
          keys: [key, `${key}-b`],
          cost: 4n
        }, call)
        expect(many.decisions.map((d) => [d.allowed, d.limit, d.remaining])).toEqual([
          [false, 3n, 3n],
          [false, 3n, 3n]
        ])
        const admit = yield* unary(client, RateLimiterRpc.method.admit, { policy: "unified", key, cost: 3n }, call)
        expect([admit.decision?.allowed, admit.decision?.limit, admit.leaseId, admit.bindingAxis]).toEqual([
          false,
          2n,
          "",
          "rate"
        ])
        // Nothing was consumed: the whole burst still passes in one check.
        const whole = yield* unary(client, RateLimiterRpc.method.check, { policy: "burst", key, cost: 5n }, call)
        expect([whole.decision?.allowed, whole.decision?.remaining]).toEqual([true, 0n])
      })))

    it.live("the Service door reports CapacityExceeded for a limiter and a rate-bound admission", () =>
      Effect.scoped(Effect.gen(function*() {
        const running = yield* runningServer(yield* server)
        const limiter = yield* ServiceBackend.make({ target: running.address })
        const key = `s-${Date.now()}`
        expect(yield* Effect.flip(limiter.check("burst", key, 6))).toEqual(
          new CapacityExceeded({ policy: "burst", key, cost: 6, capacity: 5 })
        )
        expect(yield* Effect.flip(limiter.checkMany("window", [key, "other"], 4))).toEqual(
          new CapacityExceeded({ policy: "window", key, cost: 4, capacity: 3 })
        )
        expect(yield* Effect.flip(Effect.scoped(limiter.admit("unified", key, { cost: 3 })))).toEqual(
          new CapacityExceeded({ policy: "unified", key, cost: 3, capacity: 2 })
        )
        // A cost within the capacity but above what is left stays a denial.
        expect((yield* limiter.check("window", key, 2)).allowed).toBe(true)
        const denied = yield* limiter.check("window", key, 2)
        expect([denied.allowed, denied.limit, denied.remaining]).toEqual([false, 3, 1])
        // `overCapacity: "deny"` keeps the contract's denial on this door too.
        const contract = yield* ServiceBackend.make({ target: running.address, overCapacity: "deny" })
        const plain = yield* contract.check("burst", key, 6)
        expect([plain.allowed, plain.limit, plain.retryAfterMs]).toEqual([false, 5, 100])
        // The RateLimiter tag serves the same answers.
        const viaTag = yield* Effect.flip(
          Effect.flatMap(RateLimiter, (tagged) => tagged.check("burst", key, 7)).pipe(
            Effect.provideService(RateLimiter, limiter)
          )
        )
        expect(viaTag._tag).toBe("CapacityExceeded")
      })))
  })

suite("memory store", Effect.succeed({ policies }))

suite(
  "Redis store",
  Effect.map(
    Effect.suspend(() => {
      const external = process.env["REDIS_URL"]
      return external !== undefined && external !== ""
        ? Effect.succeed(external)
        : Effect.map(Effect.orDie(redisServer), (s) => s.url)
    }),
    (url): ServerOptions => ({ policies, store: { kind: "redis", redis: url } })
  )
)
