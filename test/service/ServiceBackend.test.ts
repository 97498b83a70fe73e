/**
 * ServiceBackend specifics beyond the conformance suite: configuration, local validation, and the
 * admission keeper over the Admit/Release/Heartbeat RPCs (reclaimed leases marked, holders interrupted).
 */
import { create } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { ConfigProvider, Context, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { randomUUID } from "node:crypto"
import type { Admission } from "../../src/Decision.js"
import { serviceDefinition } from "../../src/grpc/codec.js"
import {
  type CheckRequest,
  type CheckResponse,
  CheckResponseSchema,
  RateLimiter as RateLimiterService
} from "../../src/grpc/generated/throttlekit_pb.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as GrpcServer from "../../src/server/GrpcServer.js"
import * as RateLimiterRpc from "../../src/server/RateLimiterRpc.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { conformancePolicies } from "../support/conformance.js"

const memoryServer = Effect.flatMap(
  MemoryBackend.make({ policies: conformancePolicies }),
  (limiter) => GrpcServer.make({ host: "127.0.0.1", port: 0 }, [RateLimiterRpc.make(limiter)])
)

/**
 * A bare grpc-js server (not ours) answering Check with `answer(request)` and recording each request, to
 * see what the client puts on the wire and how it takes answers our server never gives.
 */
const bareCheckServer = (answer: (request: CheckRequest) => CheckResponse) =>
  Effect.gen(function*() {
    const received: Array<CheckRequest> = []
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => new grpc.Server()),
      (server) => Effect.sync(() => server.forceShutdown())
    )
    server.addService(serviceDefinition(RateLimiterService), {
      check: (
        call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>,
        callback: grpc.sendUnaryData<CheckResponse>
      ) => {
        received.push(call.request)
        callback(null, answer(call.request))
      }
    })
    const port = yield* Effect.async<number, Error>((resume) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
        resume(error === null ? Effect.succeed(port) : Effect.fail(error)))
    )
    return { address: `127.0.0.1:${port}`, received }
  })

describe("ServiceBackend", () => {
  it.live("layerConfig reads THROTTLEKIT_TARGET and THROTTLEKIT_DEADLINE", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* memoryServer
      const provider = ConfigProvider.fromMap(
        new Map([["THROTTLEKIT_TARGET", server.address], ["THROTTLEKIT_DEADLINE", "2 seconds"]])
      )
      const decision = yield* Effect.provide(
        Effect.flatMap(RateLimiter, (limiter) => limiter.check("burst", randomUUID())),
        ServiceBackend.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(provider)))
      )
      expect([decision.allowed, decision.remaining]).toEqual([true, 4])
      const missing = yield* Effect.flip(Layer.build(
        ServiceBackend.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))))
      ))
      expect(missing._tag).toBe("ConfigError")
    })))

  it.live("an unparsable target fails the layer with InvalidArgument", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(Layer.build(ServiceBackend.layer({ target: "" }))))
      expect(error._tag).toBe("InvalidArgument")
      if (error._tag === "InvalidArgument") expect(error.argument).toBe("target")
    }))

  it.live("bad input is refused locally, before any call (even with no server)", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const local = [
          yield* Effect.flip(limiter.check("p", "k", -1)),
          yield* Effect.flip(limiter.check("p", "")),
          yield* Effect.flip(limiter.debit("p", "k", 0.5)),
          yield* Effect.flip(limiter.leases.acquire("p", "k", { hold: -5 }))
        ]
        const remote = yield* Effect.flip(limiter.check("p", "k"))
        return { local: local.map((e) => e._tag), remote: remote._tag }
      })
      // Port 1 on loopback: nothing listens there.
      const result = yield* Effect.provide(program, ServiceBackend.layer({ target: "127.0.0.1:1" }))
      expect(result).toEqual({
        local: ["InvalidArgument", "InvalidArgument", "InvalidArgument", "InvalidArgument"],
        remote: "ServiceUnavailable"
      })
    }))

  it.live("a call made after the layer was released is ServiceUnavailable (the channel is closed)", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* memoryServer
      const released = yield* Effect.provide(RateLimiter, ServiceBackend.layer({ target: server.address }))
      const error = yield* Effect.flip(released.check("burst", randomUUID()))
      expect(error._tag).toBe("ServiceUnavailable")
    })))

  it.live("check sends policy, key and cost as given; an answer without a decision is a protocol BackendError", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* bareCheckServer((request) =>
        create(CheckResponseSchema, request.key === "answered" ? { decision: { allowed: true, limit: 9n } } : {})
      )
      const limiter = yield* ServiceBackend.make({ target: server.address })
      const decision = yield* limiter.check("p", "answered")
      expect([decision.allowed, decision.limit, decision.remaining]).toEqual([true, 9, 0])
      const error = yield* Effect.flip(limiter.check("p", "k\u00e9y", 3))
      expect(error._tag).toBe("BackendError")
      if (error._tag === "BackendError") expect(error.code).toBe("PROTOCOL")
      expect(server.received.map(({ cost, key, policy }) => ({ policy, key, cost }))).toEqual([
        { policy: "p", key: "answered", cost: 1n },
        { policy: "p", key: "k\u00e9y", cost: 3n }
      ])
    })))

  it.live("a kept-alive lease the server no longer holds is marked reclaimed, and its holder interrupted", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* memoryServer
      // A short TTL on the client side: the keeper beats every 100 ms.
      const layer = ServiceBackend.layer({ target: server.address, leaseTtlMs: 200 })
      const limiter = Context.get(yield* Layer.build(layer), RateLimiter)
      const admitted = yield* Deferred.make<Admission>()
      const holder = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const admission = yield* limiter.admit("pool", randomUUID(), { keepAlive: true, interruptOnReclaim: true })
        yield* Deferred.succeed(admitted, admission)
        return yield* Effect.never
      })))
      const admission = yield* Deferred.await(admitted)
      expect([admission.held, admission.reclaimed]).toEqual([true, false])
      // Someone else gives the slot back on the server: the next heartbeat learns it was reclaimed.
      yield* limiter.leases.release(admission.leaseId, true)
      const exit = yield* Fiber.await(holder).pipe(Effect.timeout(Duration.seconds(10)))
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(admission.reclaimed).toBe(true)
    })))
})
