/**
 * Unary calls of a client dialled by `acquireChannel` start on the channel directly (`sendUnary` without
 * grpc-js's client layer); a client given interceptors goes through that layer. Both must end the same way:
 * each case runs on both clients and expects the same outcome.
 *
 * The server is a real grpc-js server on loopback, but not ours: ours never leaves a Check unanswered nor
 * answers bytes that do not decode, which the deadline, cancellation and decode-failure cases need.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect, Exit, Fiber, Scope } from "effect"
import { acquireChannel } from "../../src/grpc/channel.js"
import { unary } from "../../src/grpc/client.js"
import { methodPath, serializer } from "../../src/grpc/codec.js"
import { RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import { GrpcStatusError } from "../../src/grpc/status.js"

const check = RateLimiterRpc.method.check

/** How the test server answers a Check, by key. */
const behaviours = {
  /** A decision. */
  answer: "answer",
  /** Never answers: records the call's cancellation. */
  hang: "hang",
  /** Bytes that are not a CheckResponse. */
  garbage: "garbage"
} as const

interface TestServer {
  readonly target: string
  /** Keys of the hanging calls the client cancelled (or whose deadline passed on the server). */
  readonly cancelled: Array<string>
}

const testServer = Effect.acquireRelease(
  Effect.async<{ readonly server: grpc.Server; readonly state: TestServer }>((resume) => {
    const server = new grpc.Server()
    const cancelled: Array<string> = []
    const answer = serializer(check.output)
    const definition: grpc.ServiceDefinition = {
      Check: {
        path: methodPath(check),
        requestStream: false,
        responseStream: false,
        requestSerialize: (value: Buffer) => value,
        // The request is read as raw bytes: the key is the last field, enough to pick a behaviour.
        requestDeserialize: (bytes: Buffer) => bytes,
        responseSerialize: (value: Buffer) => value,
        responseDeserialize: (bytes: Buffer) => bytes
      }
    }
    server.addService(definition, {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const text = call.request.toString("latin1")
        if (text.includes(behaviours.hang)) {
          call.once("cancelled", () => cancelled.push(behaviours.hang))
          return
        }
        if (text.includes(behaviours.garbage)) return callback(null, Buffer.from([0xff, 0xff, 0xff, 0xff]))
        callback(
          null,
          answer({
            $typeName: "throttlekit.v1.CheckResponse",
            decision: {
              $typeName: "throttlekit.v1.Decision",
              allowed: true,
              limit: 10n,
              remaining: 9n,
              resetAt: 0n,
              retryAfterMs: 0n
            }
          })
        )
      }
    })
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error !== null) resume(Effect.die(error))
      else resume(Effect.succeed({ server, state: { target: `127.0.0.1:${port}`, cancelled } }))
    })
  }),
  ({ server }) => Effect.sync(() => server.forceShutdown())
).pipe(Effect.map(({ state }) => state))

/** A client on the direct path, and one through grpc-js's client layer (a pass-through interceptor). */
const clients = (target: string) =>
  Effect.gen(function*() {
    const direct = yield* acquireChannel({ target })
    const passThrough: grpc.Interceptor = (options, nextCall) => new grpc.InterceptingCall(nextCall(options))
    const intercepted = yield* acquireChannel({ target, channelOptions: { interceptors: [passThrough] } })
    return [["direct", direct], ["through grpc-js's client layer", intercepted]] as const
  })

const request = (key: string) => ({ policy: "api", key, cost: 1n })

describe("unary calls (direct and through grpc-js's client layer)", () => {
  it.live("an answer, a missed deadline and a response that does not decode end the same way on both", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* testServer
      for (const [name, client] of yield* clients(server.target)) {
        const answered = yield* unary(client, check, request(behaviours.answer), { deadlineMs: 2000 })
        expect(answered.decision?.remaining, name).toBe(9n)

        const late = yield* Effect.flip(unary(client, check, request(behaviours.hang), { deadlineMs: 100 }))
        expect(late, name).toBeInstanceOf(GrpcStatusError)
        expect(late.code, name).toBe(grpc.status.DEADLINE_EXCEEDED)

        const garbled = yield* Effect.flip(unary(client, check, request(behaviours.garbage), { deadlineMs: 2000 }))
        expect(garbled.code, name).toBe(grpc.status.INTERNAL)
        expect(garbled.details, name).toContain("Response message parsing error")
      }
    })))

  it.live("calls with different bounds each end at their own deadline, cancelled at the server, on both", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* testServer
      for (const [name, client] of yield* clients(server.target)) {
        const before = server.cancelled.length
        const started = performance.now()
        // A direct call's deadline is its client's shared queue for its bound: two bounds, interleaved.
        const ends = yield* Effect.forEach(
          [150, 400, 150],
          (deadlineMs) =>
            unary(client, check, request(behaviours.hang), { deadlineMs }).pipe(
              Effect.flip,
              Effect.map((error) => ({ code: error.code, deadlineMs, at: performance.now() - started }))
            ),
          { concurrency: "unbounded" }
        )
        for (const end of ends) {
          expect(end.code, name).toBe(grpc.status.DEADLINE_EXCEEDED)
          expect(end.at, `${name}: ended before its ${end.deadlineMs} ms bound`).toBeGreaterThanOrEqual(
            end.deadlineMs - 5
          )
        }
        expect(Math.max(ends[0]!.at, ends[2]!.at), name).toBeLessThan(ends[1]!.at)
        let waited = 0
        while (server.cancelled.length < before + 3 && waited < 5000) {
          yield* Effect.sleep("20 millis")
          waited += 20
        }
        expect(server.cancelled.length, name).toBe(before + 3)
        // The client still answers after its bounds' queues emptied.
        const answered = yield* unary(client, check, request(behaviours.answer), { deadlineMs: 150 })
        expect(answered.decision?.allowed, name).toBe(true)
      }
    })))

  it.live("calls of more distinct bounds than a client shares timers for still end at their deadlines", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* testServer
      const [[, client]] = yield* clients(server.target)
      // Twelve bounds: the first eight get shared queues, the rest grpc-js's own deadline (see `sendDirect`).
      const bounds = Array.from({ length: 12 }, (_, i) => 100 + 10 * i)
      const codes = yield* Effect.forEach(
        bounds,
        (deadlineMs) =>
          unary(client, check, request(behaviours.hang), { deadlineMs }).pipe(
            Effect.flip,
            Effect.map((error) => error.code)
          ),
        { concurrency: "unbounded" }
      )
      expect(codes).toEqual(bounds.map(() => grpc.status.DEADLINE_EXCEEDED))
    })))

  it.live("interrupting a call cancels it on the wire, on both", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* testServer
      for (const [name, client] of yield* clients(server.target)) {
        const before = server.cancelled.length
        const fiber = yield* Effect.fork(unary(client, check, request(behaviours.hang), { deadlineMs: 60_000 }))
        // Wait until the server holds the call, then interrupt the caller.
        yield* Effect.sleep("200 millis")
        yield* Fiber.interrupt(fiber)
        let waited = 0
        while (server.cancelled.length === before && waited < 5000) {
          yield* Effect.sleep("20 millis")
          waited += 20
        }
        expect(server.cancelled.length, name).toBe(before + 1)
      }
    })))

  it.live("a call on a closed channel is UNAVAILABLE, on both", () =>
    Effect.gen(function*() {
      const server = yield* Effect.scoped(Effect.gen(function*() {
        const state = yield* testServer
        return state.target
      }))
      const scope = yield* Scope.make()
      const pair = yield* Scope.extend(clients(server), scope)
      yield* Scope.close(scope, Exit.void)
      for (const [name, client] of pair) {
        const closed = yield* Effect.flip(unary(client, check, request(behaviours.answer), { deadlineMs: 1000 }))
        expect(closed.code, name).toBe(grpc.status.UNAVAILABLE)
      }
    }))
})
