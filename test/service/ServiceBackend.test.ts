/**
 * ServiceBackend specifics beyond the conformance suite: configuration, local validation and the probe
 * that orders its faults like the other doors' (policy, then key, then amounts), and the admission keeper
 * over the Admit/Release/Heartbeat RPCs (reclaimed leases marked, holders interrupted).
 */
import { create } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Config, ConfigError, Context, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { randomUUID } from "node:crypto"
import type { Admission } from "../../src/Decision.js"
import { OperationNotSupported, type RateLimiterError } from "../../src/Errors.js"
import { serviceDefinition } from "../../src/grpc/codec.js"
import {
  type CheckManyRequest,
  type CheckManyResponse,
  CheckManyResponseSchema,
  type CheckRequest,
  type CheckResponse,
  CheckResponseSchema,
  RateLimiter as RateLimiterService
} from "../../src/grpc/generated/throttlekit_pb.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter, type RateLimiterService as Service } from "../../src/services/RateLimiter.js"
import { withConfig } from "../support/config.js"
import { conformancePolicies } from "../support/conformance.js"
import { runningServer } from "./support.js"

const memoryServer = runningServer({ policies: conformancePolicies })

/** A bare grpc-js server (not ours) on loopback with the given RateLimiter handlers, and its address. */
const bareServer = (handlers: grpc.UntypedServiceImplementation) =>
  Effect.gen(function*() {
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => new grpc.Server()),
      (server) => Effect.sync(() => server.forceShutdown())
    )
    server.addService(serviceDefinition(RateLimiterService), handlers)
    const port = yield* Effect.async<number, Error>((resume) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
        resume(error === null ? Effect.succeed(port) : Effect.fail(error)))
    )
    return `127.0.0.1:${port}`
  })

/**
 * A bare server answering Check with `answer(request)` and recording each request (it has no other
 * RPC), to see what the client puts on the wire and how it takes answers our server never gives.
 */
const bareCheckServer = (answer: (request: CheckRequest) => CheckResponse) =>
  Effect.gen(function*() {
    const received: Array<CheckRequest> = []
    const address = yield* bareServer({
      check: (
        call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>,
        callback: grpc.sendUnaryData<CheckResponse>
      ) => {
        received.push(call.request)
        callback(null, answer(call.request))
      }
    })
    return { address, received }
  })

/**
 * A bare server whose every policy is a rate limiter (CheckMany answers one allow per key), recording
 * every request it gets, by RPC.
 */
const bareLimiterServer = Effect.gen(function*() {
  const received: Array<string> = []
  const record = (rpc: string) =>
  (
    call: grpc.ServerUnaryCall<{ readonly policy?: string }, unknown>,
    callback: grpc.sendUnaryData<unknown>
  ) => {
    received.push(rpc)
    callback({ code: grpc.status.INTERNAL, details: `${rpc} on ${call.request.policy} is not expected` })
  }
  const checkMany: Array<CheckManyRequest> = []
  const address = yield* bareServer({
    checkMany: (
      call: grpc.ServerUnaryCall<CheckManyRequest, CheckManyResponse>,
      callback: grpc.sendUnaryData<CheckManyResponse>
    ) => {
      received.push("checkMany")
      checkMany.push(call.request)
      callback(
        null,
        create(CheckManyResponseSchema, { decisions: call.request.keys.map(() => ({ allowed: true, limit: 1n })) })
      )
    },
    check: record("check"),
    peek: record("peek"),
    forecast: record("forecast"),
    debit: record("debit"),
    admit: record("admit")
  })
  return { address, received, checkMany }
})

/** What the cross-door comparisons look at in a fault: its tag, and the argument or operation it names. */
const fault = (error: RateLimiterError) => ({
  tag: error._tag,
  ...(error._tag === "InvalidArgument" ? { argument: error.argument } : {}),
  ...(error._tag === "OperationNotSupported" ? { operation: error.operation } : {}),
  ...(error._tag === "PolicyNotFound" ? { policy: error.policy } : {})
})

/**
 * Bad calls (each has a bad argument), on every kind of policy and on an unknown one. `blind` marks the
 * Service door's blind spot: a debit on an admitter reports the argument there (an admit on a meter no
 * longer does: our server answers Peek on a meter, which tells it from an admitter).
 */
const badCalls: ReadonlyArray<{
  readonly label: string
  readonly call: (limiter: Service) => Effect.Effect<unknown, RateLimiterError>
  readonly blind?: true
}> = [
  { label: "check unknown", call: (l) => l.check("nope", "", 0) },
  { label: "check limiter", call: (l) => l.check("burst", "", 0) },
  { label: "check limiter cost", call: (l) => l.check("burst", "k", -1) },
  { label: "check meter", call: (l) => l.check("tokens", "", 1) },
  { label: "check admitter", call: (l) => l.check("pool", "k", 1.5) },
  { label: "checkMany unknown", call: (l) => l.checkMany("nope", [""]) },
  { label: "checkMany limiter", call: (l) => l.checkMany("window", ["k", ""], 0) },
  { label: "checkMany meter", call: (l) => l.checkMany("tokens", ["k"], Number.NaN) },
  { label: "peek unknown", call: (l) => l.peek("nope", "") },
  { label: "peek limiter", call: (l) => l.peek("burst", "") },
  { label: "peek meter", call: (l) => l.peek("tokens", "") },
  { label: "peek admitter", call: (l) => l.peek("pool", "") },
  { label: "forecast unknown", call: (l) => l.forecast("nope", "k", 0) },
  { label: "forecast limiter", call: (l) => l.forecast("bucket", "k", Infinity) },
  { label: "forecast admitter", call: (l) => l.forecast("unified", "", 1) },
  { label: "debit unknown", call: (l) => l.debit("nope", "k", 0) },
  { label: "debit limiter", call: (l) => l.debit("burst", "", 1) },
  { label: "debit meter", call: (l) => l.debit("tokens", "k", 0.5) },
  { label: "debit admitter", call: (l) => l.debit("pool", "", 1), blind: true },
  { label: "admit unknown", call: (l) => l.leases.acquire("nope", "k", { hold: -1 }) },
  { label: "admit limiter", call: (l) => l.leases.acquire("window", "", {}) },
  { label: "admit meter", call: (l) => l.leases.acquire("tokens", "k", { cost: 0 }) },
  { label: "forecast meter", call: (l) => l.forecast("tokens", "k", 0) },
  { label: "admit admitter", call: (l) => l.leases.acquire("pool", "k", { value: Number.NaN }) },
  { label: "scoped admit limiter", call: (l) => Effect.scoped(l.admit("burst", "", { cost: 2 })) }
]

describe("ServiceBackend", () => {
  it.live("layerConfig reads its options from Config; a missing value fails with Effect's ConfigError", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* memoryServer
      const backend = ServiceBackend.layerConfig({
        target: Config.string("THROTTLEKIT_TARGET"),
        deadline: Config.duration("THROTTLEKIT_DEADLINE").pipe(Config.withDefault(ServiceBackend.DEFAULT_DEADLINE))
      })
      const key = randomUUID()
      const checkWith = (entries: ReadonlyArray<readonly [string, string]>) =>
        Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => limiter.check("burst", key)),
          withConfig(backend, entries)
        )
      const decision = yield* checkWith([["THROTTLEKIT_TARGET", server.address], ["THROTTLEKIT_DEADLINE", "2 seconds"]])
      expect([decision.allowed, decision.remaining]).toEqual([true, 4])

      const missing = yield* Effect.flip(checkWith([]))
      expect(ConfigError.isConfigError(missing)).toBe(true)
      expect(missing.message).toContain("THROTTLEKIT_TARGET")
      const invalid = yield* Effect.flip(
        checkWith([["THROTTLEKIT_TARGET", server.address], ["THROTTLEKIT_DEADLINE", "soon"]])
      )
      expect(ConfigError.isConfigError(invalid)).toBe(true)
      // Neither failure reached the server: the next check sees only the first.
      const next = yield* checkWith([["THROTTLEKIT_TARGET", server.address]])
      expect([next.allowed, next.remaining]).toEqual([true, 3])
    })))

  it.live("an unparsable target fails the layer with InvalidArgument", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(Layer.build(ServiceBackend.layer({ target: "" }))))
      expect(error._tag).toBe("InvalidArgument")
      if (error._tag === "InvalidArgument") expect(error.argument).toBe("target")
    }))

  it.live("bad input never leaves the process: with no server, its fault is still reported", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const local = [
          yield* Effect.flip(limiter.check("p", "k", -1)),
          yield* Effect.flip(limiter.check("p", "")),
          yield* Effect.flip(limiter.debit("p", "k", 0.5)),
          yield* Effect.flip(limiter.leases.acquire("p", "k", { hold: -5 })),
          yield* Effect.flip(limiter.check("p", "", 0))
        ]
        const remote = yield* Effect.flip(limiter.check("p", "k"))
        return { local: local.map(fault), remote: remote._tag }
      })
      // Port 1 on loopback: nothing listens there. The probe cannot tell, so the argument is reported
      // (key before cost).
      const result = yield* Effect.provide(program, ServiceBackend.layer({ target: "127.0.0.1:1" }))
      expect(result).toEqual({
        local: [
          { tag: "InvalidArgument", argument: "cost" },
          { tag: "InvalidArgument", argument: "key" },
          { tag: "InvalidArgument", argument: "tokens" },
          { tag: "InvalidArgument", argument: "hold" },
          { tag: "InvalidArgument", argument: "key" }
        ],
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
      // A short TTL on the client side: the keeper beats every 100 ms (a scoped admit keeps its lease
      // alive by default).
      const layer = ServiceBackend.layer({ target: server.address, leaseTtlMs: 200 })
      const limiter = Context.get(yield* Layer.build(layer), RateLimiter)
      const admitted = yield* Deferred.make<Admission>()
      const holder = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const admission = yield* limiter.admit("pool", randomUUID(), { interruptOnReclaim: true })
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
  describe("the probe (a bad call reports the policy's fault first, as on every door)", () => {
    it.live("an unknown policy, a wrong kind, then the key", () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* memoryServer
        const limiter = yield* ServiceBackend.make({ target: server.address })
        const unknown = yield* Effect.flip(limiter.check("nope", "", 0))
        expect(unknown._tag).toBe("PolicyNotFound")
        if (unknown._tag === "PolicyNotFound") {
          expect(unknown.policy).toBe("nope")
          expect(unknown.configured).toContain("burst")
        }
        const meter = yield* Effect.flip(limiter.check("tokens", "", 1))
        expect(meter).toEqual(
          new OperationNotSupported({ policy: "tokens", operation: "check", reason: "a meter policy" })
        )
        const key = yield* Effect.flip(limiter.check("burst", "", 0))
        expect(fault(key)).toEqual({ tag: "InvalidArgument", argument: "key" })
      })))

    it.live("the same fault as the Memory door for every bad call but the documented blind spot", () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* memoryServer
        const service = yield* ServiceBackend.make({ target: server.address })
        const memory = yield* MemoryBackend.make({ policies: conformancePolicies })
        for (const { blind, call, label } of badCalls) {
          const viaMemory = fault(yield* Effect.flip(call(memory)))
          const viaService = fault(yield* Effect.flip(call(service)))
          if (blind === true) {
            // Only a consuming call could tell a meter from an admitter: the argument is reported.
            expect([label, viaMemory.tag, viaService.tag]).toEqual([label, "OperationNotSupported", "InvalidArgument"])
          } else {
            expect([label, viaService]).toEqual([label, viaMemory])
          }
        }
      })))

    it.live("a probe consumes nothing (peek and a debit before and after)", () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* memoryServer
        const limiter = yield* ServiceBackend.make({ target: server.address })
        const key = randomUUID()
        yield* limiter.check("burst", key)
        const before = yield* limiter.peek("burst", key)
        // The key the probe peeks and forecasts is read, never written.
        const probeKeyBefore = yield* limiter.peek("burst", ServiceBackend.PROBE_KEY)
        for (const { call } of badCalls) yield* Effect.flip(call(limiter))
        for (
          const probe of <ReadonlyArray<Effect.Effect<unknown, RateLimiterError>>> [
            limiter.check("burst", key, 0),
            limiter.checkMany("burst", [key], -1),
            limiter.peek("burst", ""),
            limiter.forecast("burst", key, 0),
            limiter.debit("burst", key, 0),
            limiter.leases.acquire("burst", key, { hold: -1 }),
            limiter.debit("tokens", "", 1),
            limiter.leases.acquire("pool", "", {})
          ]
        ) yield* Effect.flip(probe)
        const after = yield* limiter.peek("burst", key)
        expect([after.allowed, after.remaining, after.limit]).toEqual([before.allowed, before.remaining, before.limit])
        expect(after.remaining).toBe(4)
        const probeKeyAfter = yield* limiter.peek("burst", ServiceBackend.PROBE_KEY)
        expect(probeKeyAfter.remaining).toBe(probeKeyBefore.remaining)
        expect(probeKeyAfter.remaining).toBe(5)
        // The meter's budget (10) and the admitter's three slots are whole.
        expect((yield* limiter.debit("tokens", key, 10)).allowed).toBe(true)
        const admissions = yield* Effect.forEach([1, 2, 3], () => limiter.leases.acquire("pool", key))
        expect(admissions.map((a) => a.held)).toEqual([true, true, true])
        yield* Effect.forEach(admissions, (a) => limiter.leases.release(a.leaseId, false))
      })))

    it.live("the bad input never reaches the server: the probe is a CheckMany with no keys", () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* bareLimiterServer
        const limiter = yield* ServiceBackend.make({ target: server.address })
        const key = yield* Effect.flip(limiter.check("p", "", 0))
        expect(fault(key)).toEqual({ tag: "InvalidArgument", argument: "key" })
        // The server answered the CheckMany: a rate limiter, which serves no debit.
        const debit = yield* Effect.flip(limiter.debit("p", "k", 0))
        expect(fault(debit)).toEqual({ tag: "OperationNotSupported", operation: "debit" })
        expect(server.received).toEqual(["checkMany", "checkMany"])
        expect(server.checkMany.map(({ cost, keys, policy }) => ({ policy, keys, cost }))).toEqual([
          { policy: "p", keys: [], cost: 1n },
          { policy: "p", keys: [], cost: 1n }
        ])
      })))

    it.live("a server without CheckMany cannot tell: grpc's own UNIMPLEMENTED is not the policy's", () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* bareCheckServer(() => create(CheckResponseSchema, {}))
        const limiter = yield* ServiceBackend.make({ target: server.address })
        const error = yield* Effect.flip(limiter.check("p", "", 1))
        expect(fault(error)).toEqual({ tag: "InvalidArgument", argument: "key" })
        expect(server.received).toEqual([])
      })))
  })
})
