/**
 * Bad bytes on the gRPC wire, sent with a raw grpc-js client (no client-side validation, hand-built or
 * random request bodies) to the real server over a real Redis store: strings that are not UTF-8, keys
 * past the key cap, messages past the 4 MiB receive limit, and fast-check random bodies to every RPC.
 * Each answer is a status (never a crash, never a handler defect, never INTERNAL for a body that does not
 * decode: that is INVALID_ARGUMENT), the keyspace is unchanged where the
 * request was refused, and the server keeps serving.
 */
import { fromBinary } from "@bufbuild/protobuf"
import { describe, expect, layer } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Effect, Layer } from "effect"
import * as fc from "fast-check"
import { methodPath } from "../../src/grpc/codec.js"
import { Health } from "../../src/grpc/generated/health_pb.js"
import { CheckResponseSchema, RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { MeterPolicy } from "../../src/Policy.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { errorRecorder, keyspaceReader, rawClient, sendRaw } from "../support/rawWire.js"
import { redisServer } from "../support/redisServer.js"
import { fixedWindow, pool } from "./support.js"

/** A token budget, the policy a Debit names (a debit on a limiter is refused for its policy first). */
const tokens: MeterPolicy = {
  kind: "meter",
  name: "tokens",
  prefix: "tokens",
  budget: 100,
  windowMs: LONG_WINDOW_MS,
  maxKeys: 100_000,
  shared: false
}

const policies = [fixedWindow("window", 10, LONG_WINDOW_MS), pool("slots", 2), tokens]

// ---------------------------------------------------------------------------------------------------------
// Hand-built protobuf
// ---------------------------------------------------------------------------------------------------------

const varint = (value: bigint): Array<number> => {
  // int64 negatives are sent as their two's complement in 64 bits (ten bytes).
  let v = value < 0n ? (1n << 64n) + value : value
  const out: Array<number> = []
  do {
    const byte = Number(v & 0x7fn)
    v >>= 7n
    out.push(v === 0n ? byte : byte | 0x80)
  } while (v !== 0n)
  return out
}

/** A length-delimited field (string, bytes, message). */
const bytesField = (field: number, bytes: Uint8Array | ReadonlyArray<number>): Buffer =>
  Buffer.from([...varint(BigInt((field << 3) | 2)), ...varint(BigInt(bytes.length)), ...bytes])

/** A varint field (int64, bool). */
const varintField = (field: number, value: bigint): Buffer =>
  Buffer.from([...varint(BigInt(field << 3)), ...varint(value)])

const text = (s: string) => Buffer.from(s, "utf8")

/** Byte sequences that are not UTF-8: a lone continuation byte, an overlong "/", a surrogate, 0xFF. */
const notUtf8: ReadonlyArray<readonly [string, ReadonlyArray<number>]> = [
  ["a lone continuation byte", [0x6b, 0x80]],
  ["an overlong encoding", [0xc0, 0xaf]],
  ["an encoded surrogate", [0xed, 0xa0, 0x80]],
  ["0xFF", [0xff, 0xfe]],
  ["a truncated sequence", [0x6b, 0xe2, 0x82]]
]

// ---------------------------------------------------------------------------------------------------------
// The server under test and a raw client
// ---------------------------------------------------------------------------------------------------------

interface Rig {
  readonly address: string
  readonly raw: grpc.Client
  readonly keyspace: Effect.Effect<string>
  /** Messages the server logged at error level (a handler defect is logged so). */
  readonly errors: Array<string>
}

class WireRig extends Context.Tag("test/WireRig")<WireRig, Rig>() {}

const rig = Layer.scoped(
  WireRig,
  Effect.gen(function*() {
    const redis = yield* redisServer
    const errors: Array<string> = []
    const context = yield* Layer.build(
      ThrottleKitServer.layer({ policies, store: { kind: "redis", redis: redis.url }, host: "127.0.0.1", port: 0 })
        .pipe(
          Layer.provide(errorRecorder(errors))
        )
    )
    const address = Context.get(context, ThrottleKitServer.GrpcServer).address
    const raw = yield* rawClient(address)
    const keyspace = yield* keyspaceReader(redis.url)
    return { address, raw, keyspace, errors }
  }).pipe(Effect.orDie)
)

const path = (name: keyof typeof RateLimiterRpc.method) => methodPath(RateLimiterRpc.method[name])

/** The server still answers: health SERVING and a real check. */
const stillServing = Effect.gen(function*() {
  const { raw } = yield* WireRig
  const health = yield* sendRaw(raw, methodPath(Health.method.check), Buffer.alloc(0))
  expect(health.code).toBe(grpc.status.OK)
  const ok = yield* sendRaw(
    raw,
    path("check"),
    Buffer.concat([bytesField(1, text("window")), bytesField(2, text("alive"))])
  )
  expect(ok.code).toBe(grpc.status.OK)
  expect(fromBinary(CheckResponseSchema, ok.body!).decision?.limit).toBe(10n)
})

describe("bad bytes on the gRPC wire", () => {
  layer(rig, { excludeTestServices: true, timeout: 60_000 })((it) => {
    const utf8Requests = notUtf8.flatMap(([label, bad]) => [
      {
        name: `Check: key with ${label}`,
        rpc: "check" as const,
        body: [bytesField(1, text("window")), bytesField(2, bad)]
      },
      {
        name: `Check: policy with ${label}`,
        rpc: "check" as const,
        body: [bytesField(1, bad), bytesField(2, text("k"))]
      },
      {
        name: `Peek: key with ${label}`,
        rpc: "peek" as const,
        body: [bytesField(1, text("window")), bytesField(2, bad)]
      },
      {
        name: `Forecast: key with ${label}`,
        rpc: "forecast" as const,
        body: [bytesField(1, text("window")), bytesField(2, bad)]
      },
      {
        name: `Debit: key with ${label}`,
        rpc: "debit" as const,
        body: [bytesField(1, text("tokens")), bytesField(2, bad)]
      },
      {
        name: `Admit: key with ${label}`,
        rpc: "admit" as const,
        body: [bytesField(1, text("slots")), bytesField(2, bad)]
      },
      {
        name: `CheckMany: second key with ${label}`,
        rpc: "checkMany" as const,
        body: [bytesField(1, text("window")), bytesField(2, text("good")), bytesField(2, bad)]
      },
      { name: `Release: lease id with ${label}`, rpc: "release" as const, body: [bytesField(1, bad)] },
      { name: `Heartbeat: lease id with ${label}`, rpc: "heartbeat" as const, body: [bytesField(1, bad)] }
    ])

    it.effect.each(utf8Requests)(
      "$name: refused with a status, nothing written",
      ({ body, rpc }) =>
        Effect.gen(function*() {
          const { keyspace, raw } = yield* WireRig
          const before = yield* keyspace
          const answer = yield* sendRaw(raw, path(rpc), Buffer.concat(body))
          // proto3 strings must be UTF-8: the decoder refuses the message before any handler runs, and
          // the server answers INVALID_ARGUMENT (grpc-js alone would answer INTERNAL).
          expect(answer.code).toBe(grpc.status.INVALID_ARGUMENT)
          expect(answer.details).toMatch(/^invalid request: a string field of throttlekit\.v1\.\w+ is not valid UTF-8$/)
          expect(yield* keyspace).toBe(before)
        })
    )

    it.effect("a 1 MiB key on the wire is INVALID_ARGUMENT and changes nothing", () =>
      Effect.gen(function*() {
        const { keyspace, raw } = yield* WireRig
        const before = yield* keyspace
        const key = Buffer.alloc(1 << 20, 0x6b)
        for (const rpc of ["check", "peek", "forecast", "debit"] as const) {
          const answer = yield* sendRaw(
            raw,
            path(rpc),
            Buffer.concat([bytesField(1, text(rpc === "debit" ? "tokens" : "window")), bytesField(2, key)])
          )
          expect([rpc, answer.code]).toEqual([rpc, grpc.status.INVALID_ARGUMENT])
          expect(answer.details).toContain("key")
        }
        const admit = yield* sendRaw(
          raw,
          path("admit"),
          Buffer.concat([bytesField(1, text("slots")), bytesField(2, key)])
        )
        expect(admit.code).toBe(grpc.status.INVALID_ARGUMENT)
        expect(yield* keyspace).toBe(before)
      }))

    it.effect("costs past int64's safe range on the wire are INVALID_ARGUMENT and change nothing", () =>
      Effect.gen(function*() {
        const { keyspace, raw } = yield* WireRig
        const before = yield* keyspace
        for (const cost of [-1n, -(2n ** 63n), 2n ** 53n, 2n ** 63n - 1n]) {
          const answer = yield* sendRaw(
            raw,
            path("check"),
            Buffer.concat([bytesField(1, text("window")), bytesField(2, text("k")), varintField(3, cost)])
          )
          expect([String(cost), answer.code]).toEqual([String(cost), grpc.status.INVALID_ARGUMENT])
        }
        expect(yield* keyspace).toBe(before)
      }))

    it.effect("a request past the 4 MiB receive limit is RESOURCE_EXHAUSTED, a typed BackendError in the client", () =>
      Effect.gen(function*() {
        const { address, keyspace, raw } = yield* WireRig
        const before = yield* keyspace
        const huge = yield* sendRaw(
          raw,
          path("check"),
          Buffer.concat([bytesField(1, text("window")), bytesField(2, Buffer.alloc(5 << 20, 0x6b))])
        )
        expect(huge.code).toBe(grpc.status.RESOURCE_EXHAUSTED)

        // Through ServiceBackend: every key valid (4 KiB), 1100 of them, 4.4 MB in all.
        const keys = Array.from({ length: 1100 }, (_, i) => `${i}-`.padEnd(4000, "k"))
        const error = yield* Effect.flip(
          Effect.flatMap(RateLimiter, (limiter) => limiter.checkMany("window", keys)).pipe(
            Effect.provide(ServiceBackend.layer({ target: address, deadline: "10 seconds" }))
          )
        )
        expect(error._tag).toBe("BackendError")
        if (error._tag === "BackendError") expect(error.code).toBe("RESOURCE_EXHAUSTED")
        expect(yield* keyspace).toBe(before)
        // Just under the limit the message is received, and the key cap refuses it.
        const under = yield* sendRaw(
          raw,
          path("check"),
          Buffer.concat([bytesField(1, text("window")), bytesField(2, Buffer.alloc(4_000_000, 0x6b))])
        )
        expect([under.code, under.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringContaining("key")])
        expect(yield* keyspace).toBe(before)
        yield* stillServing
      }))

    const rpcs = Object.keys(RateLimiterRpc.method) as Array<keyof typeof RateLimiterRpc.method>

    it.effect(
      "fuzz: random bytes to every RPC are answered with a status; no handler defect; still serving",
      () =>
        Effect.gen(function*() {
          const { errors, raw } = yield* WireRig
          const seen = new Map<string, number>()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(
                fc.constantFrom(...rpcs),
                fc.uint8Array({ maxLength: 512 }),
                async (rpc, bytes) => {
                  const answer = await Effect.runPromise(sendRaw(raw, path(rpc), Buffer.from(bytes)))
                  const code = grpc.status[answer.code] ?? String(answer.code)
                  seen.set(code, (seen.get(code) ?? 0) + 1)
                  // Any status the server chose (a decision, a refusal, a decoding failure: INVALID_ARGUMENT)
                  // but never a defect nor INTERNAL.
                  expect(answer.details).not.toBe("internal error")
                  expect([
                    grpc.status.DEADLINE_EXCEEDED,
                    grpc.status.UNAVAILABLE,
                    grpc.status.UNKNOWN,
                    grpc.status.INTERNAL
                  ]).not.toContain(answer.code)
                }
              ),
              { numRuns: 400 }
            )
          )
          console.log(`[wire fuzz] random bodies: ${JSON.stringify(Object.fromEntries(seen))}`)
          expect(errors).toEqual([])
          yield* stillServing
        }),
      { timeout: 120_000 }
    )

    it.effect(
      "fuzz: well-formed requests with hostile field values are answered with a status",
      () =>
        Effect.gen(function*() {
          const { errors, raw } = yield* WireRig
          const seen = new Map<string, number>()
          const hostileString = fc.oneof(
            fc.constantFrom("window", "slots", "", "nope"),
            fc.string({ unit: "binary", maxLength: 64 }),
            fc.string({ unit: "grapheme", maxLength: 16 })
          )
          const hostileInt = fc.oneof(
            fc.constantFrom(0n, 1n, -1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n)),
            fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
          )
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(
                fc.constantFrom(...rpcs),
                hostileString,
                fc.array(hostileString, { maxLength: 4 }),
                hostileInt,
                hostileInt,
                async (rpc, policy, keys, cost, hint) => {
                  const fields = [
                    bytesField(1, text(policy)),
                    ...keys.map((key) => bytesField(2, text(key))),
                    varintField(3, cost),
                    varintField(4, hint),
                    varintField(5, hint)
                  ]
                  const body = rpc === "release" || rpc === "heartbeat"
                    ? Buffer.concat(keys.map((key) => bytesField(1, text(key))))
                    : Buffer.concat(fields)
                  const answer = await Effect.runPromise(sendRaw(raw, path(rpc), body))
                  const code = grpc.status[answer.code] ?? String(answer.code)
                  seen.set(code, (seen.get(code) ?? 0) + 1)
                  expect(answer.details).not.toBe("internal error")
                  expect([
                    grpc.status.OK,
                    grpc.status.INVALID_ARGUMENT,
                    grpc.status.NOT_FOUND,
                    grpc.status.UNIMPLEMENTED
                  ]).toContain(answer.code)
                }
              ),
              { numRuns: 400 }
            )
          )
          console.log(`[wire fuzz] hostile fields: ${JSON.stringify(Object.fromEntries(seen))}`)
          expect(errors).toEqual([])
          yield* stillServing
        }),
      { timeout: 120_000 }
    )
  })
})
