/**
 * What the real server (`ThrottleKitServer.layer`, bound on 0.0.0.0 and reached both over loopback and
 * through this machine's non-loopback address, as a remote peer) answers to bad inputs on the wire, sent
 * with a raw grpc-js client past every client-side codec:
 * - a string that is not UTF-8, or a body that is not protobuf, is INVALID_ARGUMENT on every service
 *   (grpc-js alone answers INTERNAL), unary or streaming;
 * - a 100 KB policy name is INVALID_ARGUMENT whose details and metadata are short (the name is never
 *   echoed back: the Python client fails a call whose metadata passes 8 KiB), and our own client gets it
 *   as `InvalidArgument` within its 1 s deadline;
 * - NOT_FOUND lists the configured policies only to the callers the Monitor door answers (loopback, or
 *   with a Monitor secret the callers presenting it); any other caller learns only that its name is not
 *   one.
 */
import { describe, expect, layer } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Effect, Layer, Redacted } from "effect"
import { methodPath } from "../../src/grpc/codec.js"
import { Health } from "../../src/grpc/generated/health_pb.js"
import { Fleet, Monitor, RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import { MAX_DETAILS_BYTES } from "../../src/grpc/status.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { nonLoopbackAddress } from "../fleet/support.js"
import { type Answer, rawClient, sendRaw } from "../support/rawWire.js"

const POLICIES = `limiters:
  api:
    strategy: fixedWindow
    limit: 1000
    windowMs: 60000
    federated: {}
  tokens:
    tokenBudget:
      budget: 100
      windowMs: 60000
`

const MONITOR_SECRET = "wire-m0n-secret"

// ---------------------------------------------------------------------------------------------------------
// Hand-built protobuf
// ---------------------------------------------------------------------------------------------------------

const varint = (value: number): Array<number> => {
  const out: Array<number> = []
  let v = value
  do {
    const byte = v & 0x7f
    v = Math.floor(v / 128)
    out.push(v === 0 ? byte : byte | 0x80)
  } while (v !== 0)
  return out
}

/** A length-delimited field (string, bytes, message). */
const field = (number: number, bytes: Uint8Array | ReadonlyArray<number>): Buffer =>
  Buffer.from([...varint((number << 3) | 2), ...varint(bytes.length), ...bytes])

const text = (s: string) => Buffer.from(s, "utf8")

/** `k` then a lone UTF-8 continuation byte: not UTF-8. */
const NOT_UTF8 = [0x6b, 0x80]
/** A string field that claims 16 bytes and carries 1: not a protobuf message. */
const TRUNCATED = Buffer.from([0x0a, 0x10, 0x61])

const LONG_NAME = "p".repeat(100 * 1024)

// ---------------------------------------------------------------------------------------------------------
// The servers under test and raw clients
// ---------------------------------------------------------------------------------------------------------

interface Peers {
  /** A raw client over loopback. */
  readonly near: grpc.Client
  /** A raw client through this machine's non-loopback address (a remote peer to the server). */
  readonly far: grpc.Client
  readonly nearAddress: string
  readonly farAddress: string
}

interface Rig {
  /** A server without secrets. */
  readonly open: Peers
  /** A server with a Monitor secret. */
  readonly guarded: Peers
}

class WireRig extends Context.Tag("test/WireInputsRig")<WireRig, Rig>() {}

const peersOf = (remote: string, monitorSecret?: string) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(POLICIES)
    const context = yield* Layer.build(ThrottleKitServer.layer({
      policies,
      host: "0.0.0.0",
      port: 0,
      ...(monitorSecret === undefined ? {} : { monitorSecret: Redacted.make(monitorSecret) })
    }))
    const { port } = Context.get(context, ThrottleKitServer.GrpcServer)
    const nearAddress = `127.0.0.1:${port}`
    const farAddress = `${remote}:${port}`
    return { near: yield* rawClient(nearAddress), far: yield* rawClient(farAddress), nearAddress, farAddress }
  })

const rig = Layer.scoped(
  WireRig,
  Effect.gen(function*() {
    const remote = yield* nonLoopbackAddress
    return { open: yield* peersOf(remote.address), guarded: yield* peersOf(remote.address, MONITOR_SECRET) }
  }).pipe(Effect.orDie)
)

const rpc = (name: keyof typeof RateLimiterRpc.method) => methodPath(RateLimiterRpc.method[name])

/** A server-streaming call with a raw body: the status it ended with (after any messages). */
const streamRaw = (client: grpc.Client, path: string, body: Buffer) =>
  Effect.async<Answer>((resume) => {
    const call = client.makeServerStreamRequest<Buffer, Buffer>(path, (b) => b, (b) => b, body, {
      deadline: Date.now() + 10_000
    })
    call.on("data", () => {})
    call.on("error", (error: grpc.ServiceError) =>
      resume(Effect.succeed({ code: error.code, details: error.details, body: undefined, metadataBytes: 0 })))
    call.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) {
        resume(Effect.succeed({ code: status.code, details: status.details, body: undefined, metadataBytes: 0 }))
      }
    })
    return Effect.sync(() =>
      call.cancel()
    )
  })

/** A raw call with metadata `header: value`. */
const withHeader = (header: string, value: string) => {
  const metadata = new grpc.Metadata()
  metadata.set(header, value)
  return { metadata }
}

const check = (policy: string, key = "k") => Buffer.concat([field(1, text(policy)), field(2, text(key))])

describe("inputs and answers on the wire", () => {
  layer(rig, { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect("a string that is not UTF-8, or a body that is not protobuf, is INVALID_ARGUMENT on every service", () =>
      Effect.gen(function*() {
        const { near } = (yield* WireRig).open
        const badKey = yield* sendRaw(near, rpc("check"), Buffer.concat([field(1, text("api")), field(2, NOT_UTF8)]))
        expect([badKey.code, badKey.details]).toEqual([
          grpc.status.INVALID_ARGUMENT,
          "invalid request: a string field of throttlekit.v1.CheckRequest is not valid UTF-8"
        ])
        const answers = {
          check: yield* sendRaw(near, rpc("check"), TRUNCATED),
          heartbeat: yield* sendRaw(near, rpc("heartbeat"), TRUNCATED),
          health: yield* sendRaw(near, methodPath(Health.method.check), TRUNCATED),
          reserve: yield* sendRaw(near, methodPath(Fleet.method.reserve), TRUNCATED),
          snapshot: yield* sendRaw(near, methodPath(Monitor.method.getSnapshot), TRUNCATED),
          // Server streaming: refused before it streams anything.
          watch: yield* streamRaw(near, methodPath(Monitor.method.watch), TRUNCATED),
          healthWatch: yield* streamRaw(near, methodPath(Health.method.watch), Buffer.from([0x0a, 0x02, 0xff, 0xfe]))
        }
        for (const [name, answer] of Object.entries(answers)) {
          expect([name, answer.code]).toEqual([name, grpc.status.INVALID_ARGUMENT])
          expect(answer.details).toMatch(/^invalid request: (the body is not a valid|a string field of) [\w.]+/)
        }
        expect(answers.check.details).toBe(
          "invalid request: the body is not a valid throttlekit.v1.CheckRequest protobuf message"
        )
        expect(answers.healthWatch.details).toBe(
          "invalid request: a string field of grpc.health.v1.HealthCheckRequest is not valid UTF-8"
        )
        // And the server still serves.
        expect((yield* sendRaw(near, rpc("check"), check("api"))).code).toBe(grpc.status.OK)
      }))

    it.effect("a 100 KB policy name is INVALID_ARGUMENT with short details and metadata, never echoed", () =>
      Effect.gen(function*() {
        const { near } = (yield* WireRig).open
        const named = (name: string) => [field(1, text(name)), field(2, text("k"))]
        const answers = {
          check: yield* sendRaw(near, rpc("check"), Buffer.concat(named(LONG_NAME))),
          checkMany: yield* sendRaw(near, rpc("checkMany"), Buffer.concat(named(LONG_NAME))),
          peek: yield* sendRaw(near, rpc("peek"), Buffer.concat(named(LONG_NAME))),
          forecast: yield* sendRaw(near, rpc("forecast"), Buffer.concat(named(LONG_NAME))),
          debit: yield* sendRaw(near, rpc("debit"), Buffer.concat(named(LONG_NAME))),
          admit: yield* sendRaw(near, rpc("admit"), Buffer.concat(named(LONG_NAME))),
          // Fleet: loopback is authorised; the name is refused after auth, before any lookup.
          reserve: yield* sendRaw(near, methodPath(Fleet.method.reserve), field(1, text(LONG_NAME)))
        }
        for (const [name, answer] of Object.entries(answers)) {
          expect([name, answer.code, answer.details]).toEqual([
            name,
            grpc.status.INVALID_ARGUMENT,
            `invalid policy: must be at most 256 UTF-8 bytes, got ${LONG_NAME.length}`
          ])
          expect(answer.metadataBytes).toBeLessThan(1024)
        }
        // The longest possible name is still just unknown, and shown in full (it is bounded).
        const longest = yield* sendRaw(near, rpc("check"), check("p".repeat(256)))
        expect(longest.code).toBe(grpc.status.NOT_FOUND)
        expect(longest.details).toContain(`"${"p".repeat(256)}"`)
        // Health names a service, not a policy: NOT_FOUND, the name cut short.
        const health = yield* sendRaw(near, methodPath(Health.method.check), field(1, text(LONG_NAME)))
        expect(health.code).toBe(grpc.status.NOT_FOUND)
        expect(Buffer.byteLength(health.details)).toBeLessThanOrEqual(MAX_DETAILS_BYTES)
        expect(health.details).toMatch(/^unknown service "p+…"$/)
      }))

    it.effect("our own client gets the 100 KB name back as InvalidArgument, within its 1 s deadline", () =>
      Effect.gen(function*() {
        const { nearAddress } = (yield* WireRig).open
        const started = Date.now()
        const error = yield* Effect.flip(
          Effect.flatMap(RateLimiter, (limiter) => limiter.check(LONG_NAME, "k")).pipe(
            Effect.provide(ServiceBackend.layer({ target: nearAddress }))
          )
        )
        expect(error._tag).toBe("InvalidArgument")
        if (error._tag === "InvalidArgument") {
          expect([error.argument, error.reason]).toEqual(["policy", "must be at most 256 UTF-8 bytes, got 102400"])
        }
        expect(Date.now() - started).toBeLessThan(1000)
      }))

    it.effect("NOT_FOUND lists the configured policies to loopback callers only (no secret)", () =>
      Effect.gen(function*() {
        const { far, farAddress, near } = (yield* WireRig).open
        const listed = "unknown policy \"nope\"; configured policies: \"api\", \"tokens\""
        const unlisted = "unknown policy \"nope\"; the configured policies are listed to trusted callers only"
        for (const name of ["check", "debit", "admit"] as const) {
          const nearAnswer = yield* sendRaw(near, rpc(name), check("nope"))
          const farAnswer = yield* sendRaw(far, rpc(name), check("nope"))
          expect([name, nearAnswer.code, nearAnswer.details]).toEqual([name, grpc.status.NOT_FOUND, listed])
          expect([name, farAnswer.code, farAnswer.details]).toEqual([name, grpc.status.NOT_FOUND, unlisted])
        }
        // Our client, as a remote peer: PolicyNotFound naming nothing configured.
        const error = yield* Effect.flip(
          Effect.flatMap(RateLimiter, (limiter) => limiter.check("nope", "k")).pipe(
            Effect.provide(ServiceBackend.layer({ target: farAddress }))
          )
        )
        expect(error).toMatchObject({ _tag: "PolicyNotFound", policy: "nope", configured: [] })
      }))

    it.effect("with a Monitor secret, NOT_FOUND lists them only to callers presenting it, loopback included", () =>
      Effect.gen(function*() {
        const { far, near } = (yield* WireRig).guarded
        const details = (client: grpc.Client, options = {}) =>
          Effect.map(sendRaw(client, rpc("check"), check("nope"), options), (answer) => answer.details)
        const listed = "unknown policy \"nope\"; configured policies: \"api\", \"tokens\""
        const unlisted = "unknown policy \"nope\"; the configured policies are listed to trusted callers only"
        expect(yield* details(near)).toBe(unlisted)
        expect(yield* details(far)).toBe(unlisted)
        expect(yield* details(far, withHeader("x-monitor-secret", `${MONITOR_SECRET}x`))).toBe(unlisted)
        expect(yield* details(far, withHeader("x-monitor-secret", MONITOR_SECRET))).toBe(listed)
        expect(yield* details(far, withHeader("authorization", `Bearer ${MONITOR_SECRET}`))).toBe(listed)
        expect(yield* details(near, withHeader("x-monitor-secret", MONITOR_SECRET))).toBe(listed)
      }))
  })
})
