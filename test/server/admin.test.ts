/**
 * The admin door over the real gRPC server on loopback (`ThrottleKitServer.layer`, memory store), reached
 * with `AdminBackend`: reset, penalize, reward, block and unblock change what the server's RateLimiter
 * answers a `ServiceBackend` client; bad input gets its typed error and changes nothing; a caller without
 * the secret (or with a wrong one) is refused `Unauthenticated`, and without a secret configured a remote
 * caller (this machine's non-loopback address) is refused while a loopback one is served; `admin: false`
 * leaves the door unserved (UNIMPLEMENTED).
 */
import { create, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Effect, Layer, Redacted } from "effect"
import { Redis } from "ioredis"
import * as AdminBackend from "../../src/clients/AdminBackend.js"
import { methodPath } from "../../src/grpc/codec.js"
import {
  AdjustRequestSchema,
  BlockRequestSchema,
  RateLimiterAdmin as AdminRpc
} from "../../src/grpc/generated/admin_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { RateLimiterAdmin } from "../../src/services/RateLimiterAdmin.js"
import { nonLoopbackAddress } from "../fleet/support.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { rawClient, sendRaw } from "../support/rawWire.js"
import { redisServer } from "../support/redisServer.js"

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "api",
    prefix: "api",
    maxKeys: 100,
    strategy: { kind: "fixedWindow", limit: 5, windowMs: LONG_WINDOW_MS }
  },
  { kind: "meter", name: "llm", prefix: "llm", maxKeys: 100, budget: 100, windowMs: LONG_WINDOW_MS, shared: false }
]

/** A running server on `host`, port 0; its address and the port it got. */
const serve = (options: Partial<ThrottleKitServer.ThrottleKitServerOptions> = {}) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, ...options }))
    const { address } = Context.get(context, ThrottleKitServer.GrpcServer)
    return { target: address, port: Number(address.slice(address.lastIndexOf(":") + 1)) }
  })

const adminAt = (target: string, secret?: string) =>
  Effect.map(
    Layer.build(AdminBackend.layer({ target, ...(secret === undefined ? {} : { secret: Redacted.make(secret) }) })),
    Context.get(RateLimiterAdmin)
  )

const limiterAt = (target: string) =>
  Effect.map(Layer.build(ServiceBackend.layer({ target })), Context.get(RateLimiter))

describe("the admin door over gRPC", () => {
  it.live("reset, penalize, reward, block and unblock change what the server's limiter answers", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve()
      const admin = yield* adminAt(server.target)
      const limiter = yield* limiterAt(server.target)
      expect((yield* limiter.check("api", "k")).remaining).toBe(4)
      expect((yield* admin.penalize("api", "k", 3)).remaining).toBe(1)
      expect((yield* limiter.peek("api", "k")).remaining).toBe(1)
      expect((yield* admin.reward("api", "k", 2)).remaining).toBe(3)
      expect((yield* limiter.check("api", "k")).remaining).toBe(2)

      const blocked = yield* admin.block("api", "k", "1 hour")
      expect(blocked).toMatchObject({ allowed: false, remaining: 0 })
      const denied = yield* limiter.check("api", "k")
      expect(denied).toMatchObject({ allowed: false, remaining: 0, resetAt: blocked.resetAt })
      expect(denied.retryAfterMs).toBeGreaterThan(3_590_000)
      expect((yield* limiter.check("api", "other")).allowed).toBe(true)
      expect((yield* admin.unblock("api", "k")).allowed).toBe(true)
      expect((yield* limiter.check("api", "k")).remaining).toBe(1)

      yield* admin.reset("api", "k")
      expect((yield* limiter.check("api", "k")).remaining).toBe(4)

      // A token budget: penalize spends, reward refunds.
      expect((yield* limiter.debit("llm", "team", 40)).remaining).toBe(60)
      expect((yield* admin.penalize("llm", "team", 10)).remaining).toBe(50)
      expect((yield* admin.reward("llm", "team", 30)).remaining).toBe(80)
    })))

  it.live("bad input fails with its typed error and changes nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve()
      const admin = yield* adminAt(server.target)
      const limiter = yield* limiterAt(server.target)
      yield* limiter.check("api", "k", 2)
      const faults = yield* Effect.all([
        Effect.flip(admin.reset("nope", "k")),
        Effect.flip(admin.penalize("api", "", 1)),
        Effect.flip(admin.penalize("api", "k", 0)),
        Effect.flip(admin.reward("api", "k", -3)),
        Effect.flip(admin.block("api", "k", 0)),
        Effect.flip(admin.block("api", "k", "0.5 millis")),
        Effect.flip(admin.block("nope", "k", 1000))
      ])
      expect(faults.map((fault) => [fault._tag, "argument" in fault ? fault.argument : ""])).toEqual([
        ["PolicyNotFound", ""],
        ["InvalidArgument", "key"],
        ["InvalidArgument", "units"],
        ["InvalidArgument", "units"],
        ["InvalidArgument", "duration"],
        ["InvalidArgument", "duration"],
        ["PolicyNotFound", ""]
      ])
      // The server lists the configured policies to its admin caller.
      expect(faults[0]).toMatchObject({ configured: ["api", "llm"] })
      expect((yield* limiter.peek("api", "k")).remaining).toBe(3)
    })))

  it.live("the server checks wire input itself: 0, negative or oversized amounts are INVALID_ARGUMENT", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve()
      const limiter = yield* limiterAt(server.target)
      yield* limiter.check("api", "k")
      // Raw calls: AdminBackend would refuse these before sending.
      const client = yield* rawClient(server.target)
      const adjust = (units: bigint) =>
        Buffer.from(toBinary(AdjustRequestSchema, create(AdjustRequestSchema, { policy: "api", key: "k", units })))
      const block = (durationMs: bigint) =>
        Buffer.from(toBinary(BlockRequestSchema, create(BlockRequestSchema, { policy: "api", key: "k", durationMs })))
      const codes = [
        (yield* sendRaw(client, methodPath(AdminRpc.method.penalize), adjust(0n))).code,
        (yield* sendRaw(client, methodPath(AdminRpc.method.reward), adjust(-1n))).code,
        (yield* sendRaw(client, methodPath(AdminRpc.method.penalize), adjust(2n ** 62n))).code,
        (yield* sendRaw(client, methodPath(AdminRpc.method.block), block(0n))).code,
        (yield* sendRaw(client, methodPath(AdminRpc.method.block), block(-5n))).code,
        (yield* sendRaw(client, methodPath(AdminRpc.method.block), block(2n ** 60n))).code
      ]
      expect(codes).toEqual(Array(6).fill(grpc.status.INVALID_ARGUMENT))
      expect((yield* limiter.peek("api", "k")).remaining).toBe(4)
      expect((yield* sendRaw(client, methodPath(AdminRpc.method.penalize), adjust(1n))).code).toBe(grpc.status.OK)
      expect((yield* limiter.peek("api", "k")).remaining).toBe(3)
    })))

  it.live("with a secret: callers without it or with a wrong one are refused, with it served", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve({ adminSecret: Redacted.make("adm1n-key") })
      const limiter = yield* limiterAt(server.target)
      yield* limiter.check("api", "k")
      const without = yield* adminAt(server.target)
      const wrong = yield* adminAt(server.target, "adm1n-kez")
      const refused = yield* Effect.all([
        Effect.flip(without.reset("api", "k")),
        Effect.flip(without.block("api", "k", 1000)),
        Effect.flip(wrong.penalize("api", "k", 1)),
        Effect.flip(wrong.reward("api", "k", 1)),
        Effect.flip(wrong.unblock("api", "k")),
        // Auth comes first: an unauthorised caller learns nothing about the policies.
        Effect.flip(wrong.reset("nope", "k"))
      ])
      expect(refused.map((error) => error._tag)).toEqual(Array(6).fill("Unauthenticated"))
      expect((yield* limiter.peek("api", "k")).remaining).toBe(4)
      const right = yield* adminAt(server.target, "adm1n-key")
      expect((yield* right.penalize("api", "k", 4)).remaining).toBe(0)
    })))

  it.live("without a secret: a remote caller is refused, a loopback caller served", () =>
    Effect.scoped(Effect.gen(function*() {
      const remote = yield* nonLoopbackAddress
      console.log(`non-loopback peer via ${remote.address} (${remote.how})`)
      const server = yield* serve({ host: "0.0.0.0" })
      const far = yield* adminAt(`${remote.address}:${server.port}`)
      expect((yield* Effect.flip(far.reset("api", "k")))._tag).toBe("Unauthenticated")
      expect((yield* Effect.flip(far.block("api", "k", 1000)))._tag).toBe("Unauthenticated")
      // The RateLimiter RPCs are not gated: the same remote peer is answered there.
      const farLimiter = yield* limiterAt(`${remote.address}:${server.port}`)
      expect((yield* farLimiter.check("api", "k")).allowed).toBe(true)
      const near = yield* adminAt(`127.0.0.1:${server.port}`)
      expect((yield* near.block("api", "k", 1000)).allowed).toBe(false)
      expect((yield* farLimiter.check("api", "k")).allowed).toBe(false)
    })))

  it.live("over a Redis store: reset, penalize, reward and block write the keys every client of the store reads", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* redisServer
      const server = yield* serve({ store: { kind: "redis", redis: redis.url } })
      const admin = yield* adminAt(server.target)
      const limiter = yield* limiterAt(server.target)
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(redis.url, { lazyConnect: false })),
        (c) => Effect.promise(() => c.quit())
      )
      expect((yield* limiter.check("api", "k")).remaining).toBe(4)
      expect((yield* admin.penalize("api", "k", 3)).remaining).toBe(1)
      expect(yield* Effect.promise(() => client.hget("api:k", "c"))).toBe("4")
      expect((yield* admin.reward("api", "k", 2)).remaining).toBe(3)
      expect((yield* limiter.check("api", "k")).remaining).toBe(2)
      expect((yield* admin.penalize("llm", "team", 30)).remaining).toBe(70)
      // A block: the key beside the state key holds its end; checks through the server are denied with it.
      const blocked = yield* admin.block("api", "k", "1 hour")
      const ends = Number(yield* Effect.promise(() => client.get("{api:k}:block")))
      expect([blocked.allowed, blocked.remaining, blocked.resetAt]).toEqual([false, 0, ends])
      expect(blocked.retryAfterMs).toBeGreaterThan(3_500_000)
      const denied = yield* limiter.check("api", "k")
      expect([denied.allowed, denied.resetAt]).toEqual([false, ends])
      expect(yield* Effect.promise(() => client.hget("api:k", "c"))).toBe("3")
      expect((yield* admin.unblock("api", "k")).allowed).toBe(true)
      expect(yield* Effect.promise(() => client.exists("{api:k}:block"))).toBe(0)
      expect((yield* limiter.check("api", "k")).remaining).toBe(1)
      yield* admin.block("api", "k", "1 hour")
      expect((yield* Effect.flip(admin.block("api", "k", 0)))._tag).toBe("InvalidArgument")
      expect((yield* Effect.flip(admin.penalize("api", "k", 0)))._tag).toBe("InvalidArgument")
      // Reset forgets the state and lifts the block.
      yield* admin.reset("api", "k")
      expect(yield* Effect.promise(() => client.exists("api:k", "{api:k}:block"))).toBe(0)
      expect((yield* limiter.check("api", "k")).remaining).toBe(4)
    })))

  it.live("admin: false leaves the door unserved", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* serve({ admin: false })
      const admin = yield* adminAt(server.target)
      const fault = yield* Effect.flip(admin.reset("api", "k"))
      expect(fault._tag).toBe("OperationNotSupported")
    })))
})
