/**
 * The server's lifecycle and call handling, in process: health, graceful drain, the bounded shutdown,
 * cancellation and deadlines reaching the handler, bind errors, defects, and the wire's 0-means-1 and
 * INVALID_ARGUMENT rules. Test doubles stand in for the store only where the real one cannot be made
 * slow or stuck on purpose.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Chunk, Deferred, Duration, Effect, Exit, Fiber, Ref, Scope, Stream } from "effect"
import { Decision } from "../../src/Decision.js"
import type { RateLimiterError } from "../../src/Errors.js"
import { ServiceUnavailable } from "../../src/Errors.js"
import { serverStream, unary } from "../../src/grpc/client.js"
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../src/grpc/generated/health_pb.js"
import { RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as GrpcServer from "../../src/server/GrpcServer.js"
import * as RateLimiterRpcServer from "../../src/server/RateLimiterRpc.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"

const unused = Effect.dieMessage("not used by this test")

/** A RateLimiter whose methods die unless overridden. */
const stub = (overrides: Partial<RateLimiterService>): RateLimiterService => ({
  backend: "stub",
  policies: undefined,
  resolve: () => Effect.succeed(false),
  check: () => unused,
  checkMany: () => unused,
  checkAll: () => unused,
  peek: () => unused,
  forecast: () => unused,
  debit: () => unused,
  checkWithin: () => unused,
  debitWithin: () => unused,
  admit: () => unused,
  leases: { ttlMs: 2000, acquire: () => unused, release: () => unused, heartbeat: () => unused },
  ...overrides
})

const allowed = new Decision({ allowed: true, limit: 5, remaining: 4, resetAt: 1, retryAfterMs: 0 })

const serve = (limiter: RateLimiterService, options: GrpcServer.GrpcServerOptions = {}) =>
  GrpcServer.make({ host: "127.0.0.1", port: 0, ...options }, [RateLimiterRpcServer.make(limiter)])

const rawClient = (address: string) =>
  Effect.acquireRelease(
    Effect.sync(() => new grpc.Client(address, grpc.credentials.createInsecure())),
    (client) => Effect.sync(() => client.close())
  )

const serviceBackend = (address: string, options: Partial<ServiceBackend.ServiceBackendOptions> = {}) =>
  ServiceBackend.make({ target: address, ...options })

/** A handler that signals when it starts and when it is interrupted, and otherwise never ends. */
const stuck = Effect.gen(function*() {
  const started = yield* Deferred.make<void>()
  const interrupted = yield* Deferred.make<void>()
  const handler = Deferred.succeed(started, undefined).pipe(
    Effect.zipRight(Effect.never),
    Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
  )
  return { started, interrupted, handler }
})

const within = <A, E>(effect: Effect.Effect<A, E>) =>
  effect.pipe(Effect.timeoutFail({ duration: Duration.seconds(15), onTimeout: () => "timed out" as const }))

describe("GrpcServer", () => {
  it.live("health: SERVING for the server and its services, NOT_FOUND otherwise; Watch reports SERVING", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve(stub({}))
      expect(server.services).toEqual(["throttlekit.v1.RateLimiter"])
      const client = yield* rawClient(server.address)
      const check = (service: string) => unary(client, Health.method.check, { service }, { deadlineMs: 5000 })
      expect((yield* check("")).status).toBe(Serving.SERVING)
      expect((yield* check("throttlekit.v1.RateLimiter")).status).toBe(Serving.SERVING)
      const unknown = yield* Effect.flip(check("throttlekit.v1.Nope"))
      expect(unknown.code).toBe(grpc.status.NOT_FOUND)
      const first = yield* serverStream(client, Health.method.watch, { service: "" }).pipe(
        Stream.take(1),
        Stream.runCollect
      )
      expect(Chunk.toReadonlyArray(first).map((m) => m.status)).toEqual([Serving.SERVING])
      const other = yield* serverStream(client, Health.method.watch, { service: "x" }).pipe(
        Stream.take(1),
        Stream.runCollect
      )
      expect(Chunk.toReadonlyArray(other).map((m) => m.status)).toEqual([Serving.SERVICE_UNKNOWN])
    })))

  it.live("shutdown lets an in-flight call finish, ends open streams, then refuses new calls", () =>
    Effect.scoped(Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const limiter = stub({
        check: () =>
          Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(finish)), Effect.as(allowed))
      })
      const serverScope = yield* Scope.make()
      const server = yield* serve(limiter, { shutdownTimeoutMs: 30_000 }).pipe(Scope.extend(serverScope))
      const client = yield* serviceBackend(server.address, { deadline: "30 seconds" })
      const raw = yield* rawClient(server.address)

      const watching = yield* Deferred.make<void>()
      const watch = yield* serverStream(raw, Health.method.watch, { service: "" }).pipe(
        Stream.tap(() => Deferred.succeed(watching, undefined)),
        Stream.runCollect,
        Effect.fork
      )
      yield* within(Deferred.await(watching))
      const inflight = yield* Effect.fork(client.check("any", "key"))
      yield* within(Deferred.await(started))
      const closing = yield* Effect.fork(Scope.close(serverScope, Exit.void))

      // The open watch ends on its own: it does not hold the shutdown up.
      const watched = yield* within(Fiber.join(watch))
      expect(Chunk.toReadonlyArray(watched).map((m) => m.status)).toEqual([Serving.SERVING])
      // The in-flight call is still allowed to finish.
      expect(yield* Fiber.poll(closing)).toEqual(expect.objectContaining({ _tag: "None" }))
      yield* Deferred.succeed(finish, undefined)
      expect((yield* within(Fiber.join(inflight))).allowed).toBe(true)
      yield* within(Fiber.join(closing))

      const refused = yield* Effect.flip(client.check("any", "key"))
      expect(refused._tag).toBe("ServiceUnavailable")
    })))

  it.live("calls still running after the shutdown timeout are cancelled and their handlers interrupted", () =>
    Effect.scoped(Effect.gen(function*() {
      const { handler, interrupted, started } = yield* stuck
      const serverScope = yield* Scope.make()
      const server = yield* serve(stub({ check: () => handler }), { shutdownTimeoutMs: 200 }).pipe(
        Scope.extend(serverScope)
      )
      const client = yield* serviceBackend(server.address, { deadline: "30 seconds" })
      const call = yield* Effect.fork(client.check("any", "key"))
      yield* within(Deferred.await(started))
      yield* within(Scope.close(serverScope, Exit.void))
      yield* within(Deferred.await(interrupted))
      const error = yield* within(Effect.flip(Fiber.join(call)))
      expect(["ServiceUnavailable", "BackendError"]).toContain(error._tag)
    })))

  it.live("interrupting a client call cancels it, and the server interrupts its handler", () =>
    Effect.scoped(Effect.gen(function*() {
      const { handler, interrupted, started } = yield* stuck
      const server = yield* serve(stub({ check: () => handler }))
      const client = yield* serviceBackend(server.address, { deadline: "30 seconds" })
      const call = yield* Effect.fork(client.check("any", "key"))
      yield* within(Deferred.await(started))
      yield* Fiber.interrupt(call)
      yield* within(Deferred.await(interrupted))
    })))

  it.live("a missed deadline on a check is OutcomeUnknown, and the server interrupts its handler", () =>
    Effect.scoped(Effect.gen(function*() {
      const { handler, interrupted } = yield* stuck
      const server = yield* serve(stub({ check: () => handler }))
      const client = yield* serviceBackend(server.address, { deadline: "300 millis" })
      // The check reached the server, which might have applied it: the client cannot know.
      const error = yield* within(Effect.flip(client.check("any", "key")))
      expect(error._tag).toBe("OutcomeUnknown")
      if (error._tag === "OutcomeUnknown") expect(error.operation).toBe("check")
      yield* within(Deferred.await(interrupted))
    })))

  it.live("a port already in use is a GrpcBindError", () =>
    Effect.scoped(Effect.gen(function*() {
      const first = yield* serve(stub({}))
      const error = yield* Effect.flip(serve(stub({}), { port: first.port }))
      expect(error._tag).toBe("GrpcBindError")
      if (error._tag === "GrpcBindError") expect(error.address).toBe(`127.0.0.1:${first.port}`)
    })))

  it.live("a handler defect answers INTERNAL (BackendError on the client) and the server keeps serving", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve(stub({ check: () => Effect.dieMessage("boom"), peek: () => Effect.succeed(allowed) }))
      const client = yield* serviceBackend(server.address)
      const error = yield* Effect.flip(client.check("any", "key"))
      expect(error._tag).toBe("BackendError")
      if (error._tag === "BackendError") expect([error.code, error.detail]).toEqual(["INTERNAL", "internal error"])
      expect((yield* client.peek("any", "key")).allowed).toBe(true)
    })))
})

describe("ServiceBackend over a failing store", () => {
  it.live("never retries a consuming call; retries idempotent ones only when asked", () =>
    Effect.scoped(Effect.gen(function*() {
      const calls = yield* Ref.make<Record<string, number>>({})
      const down = (name: string): Effect.Effect<never, RateLimiterError> =>
        Ref.update(calls, (c) => ({ ...c, [name]: (c[name] ?? 0) + 1 })).pipe(
          Effect.zipRight(Effect.fail(new ServiceUnavailable({ service: "store", reason: "down" })))
        )
      const server = yield* serve(stub({
        check: () => down("check"),
        checkMany: () => down("checkMany"),
        debit: () => down("debit"),
        peek: () => down("peek"),
        forecast: () => down("forecast"),
        leases: {
          ttlMs: 2000,
          acquire: () => down("admit"),
          release: () => down("release"),
          heartbeat: () => down("heartbeat")
        }
      }))
      const client = yield* serviceBackend(server.address, { idempotentRetries: 2 })
      const attempts: ReadonlyArray<Effect.Effect<unknown, RateLimiterError>> = [
        client.check("p", "k"),
        client.checkMany("p", ["k"]),
        client.debit("p", "k"),
        client.leases.acquire("p", "k"),
        client.peek("p", "k"),
        client.forecast("p", "k"),
        client.leases.release("id", false),
        client.leases.heartbeat(["id"])
      ]
      for (const attempt of attempts) expect((yield* Effect.flip(attempt))._tag).toBe("ServiceUnavailable")
      expect(yield* Ref.get(calls)).toEqual({
        check: 1,
        checkMany: 1,
        debit: 1,
        admit: 1,
        peek: 3,
        forecast: 3,
        release: 3,
        heartbeat: 3
      })
    })))

  it.live("a response with fewer decisions than keys is a protocol BackendError", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve(stub({ checkMany: () => Effect.succeed([allowed]) }))
      const client = yield* serviceBackend(server.address)
      const error = yield* Effect.flip(client.checkMany("p", ["a", "b"]))
      expect(error._tag).toBe("BackendError")
      if (error._tag === "BackendError") expect(error.code).toBe("PROTOCOL")
    })))
})

describe("the RateLimiter RPCs on the wire (memory store)", () => {
  const policies = [{
    kind: "limiter" as const,
    name: "api",
    prefix: "api",
    maxKeys: 100,
    strategy: { kind: "gcra" as const, limit: 5, periodMs: 3_600_000, burst: 5 }
  }]

  it.live("cost 0 means 1; a negative cost, an empty key or a negative hold is INVALID_ARGUMENT and changes nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const limiter = yield* MemoryBackend.make({ policies })
      const server = yield* serve(limiter)
      const raw = yield* rawClient(server.address)
      const check = (key: string, cost: bigint) =>
        unary(raw, RateLimiterRpc.method.check, { policy: "api", key, cost }, { deadlineMs: 5000 })
      expect((yield* check("k", 0n)).decision?.remaining).toBe(4n)
      for (const [key, cost] of [["k", -2n], ["", 1n], ["k", 2n ** 62n]] as const) {
        const error = yield* Effect.flip(check(key, cost))
        expect([key, String(cost), error.code]).toEqual([key, String(cost), grpc.status.INVALID_ARGUMENT])
      }
      const admit = yield* Effect.flip(
        unary(raw, RateLimiterRpc.method.admit, { policy: "api", key: "k", hold: -1n }, { deadlineMs: 5000 })
      )
      expect(admit.code).toBe(grpc.status.INVALID_ARGUMENT)
      expect(admit.details).toBe("invalid hold: must not be negative, got -1")
      // Only the first check consumed.
      expect((yield* check("k", 0n)).decision?.remaining).toBe(3n)
    })))
})
