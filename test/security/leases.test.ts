/**
 * Lease ids are capabilities: whoever holds one can release the slot. So they must be unguessable, and a
 * guess must do nothing. Through every door (memory; Redis with two independent clients; the gRPC server
 * over each store with two independent clients):
 * - ids are 128 random bits in 32 lowercase hex characters, after 8 more for routing (Redis: a fixed tag
 *   naming the admitter; Memory: the lease's slot XOR the first 32 random bits, so it reads as random),
 *   never repeat, and every bit that is not a fixed routing tag is balanced (checked per bit position
 *   over thousands of ids, at six standard deviations);
 * - a second client that releases random ids, ids with the right routing tag, and near misses of the
 *   real ids (one hex digit off, upper case, padded, truncated) frees nothing; with the real id, it does.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { pool } from "../reliability/support.js"
import { redisServer } from "../support/redisServer.js"

const pair = pool("pair", 2)
const many = pool("many", 1_000_000)
const policies = [pair, many]
/** Long enough that no lease expires while a slow machine works through the guesses. */
const leaseTtlMs = 120_000

/** Two independent clients of one backend, and how many random bits its ids must carry. */
interface Clients {
  readonly owner: RateLimiterService
  readonly other: RateLimiterService
  readonly randomBits: number
  readonly ids: number
}

class TwoClients extends Context.Tag("test/TwoClients")<TwoClients, Clients>() {}

const limiterIn = <E>(layer: Layer.Layer<RateLimiter, E>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, RateLimiter))

const memoryClients = Layer.scoped(
  TwoClients,
  Effect.map(MemoryBackend.make({ policies, leaseTtlMs }), (limiter) => ({
    owner: limiter,
    other: limiter,
    randomBits: 128,
    ids: 10_000
  })).pipe(Effect.orDie)
)

// The Redis door's ids start with 8 hex characters (32 bits) naming the admitter, so that any client can
// route a release to the right lease set; the 128 bits after them are random.
const redisClients = Layer.scoped(
  TwoClients,
  Effect.gen(function*() {
    const redis = yield* redisServer
    const options = { policies, redis: redis.url, leaseTtlMs }
    return {
      owner: yield* limiterIn(RedisBackend.layer(options)),
      other: yield* limiterIn(RedisBackend.layer(options)),
      randomBits: 128,
      ids: 1000
    }
  }).pipe(Effect.orDie)
)

const serviceClients = (store: "memory" | "redis") =>
  Layer.scoped(
    TwoClients,
    Effect.gen(function*() {
      const backing: ThrottleKitServer.ServerStore = store === "memory"
        ? { kind: "memory" }
        : { kind: "redis", redis: (yield* redisServer).url }
      const server = Context.get(
        yield* Layer.build(
          ThrottleKitServer.layer({ policies, leaseTtlMs, store: backing, host: "127.0.0.1", port: 0 })
        ),
        ThrottleKitServer.GrpcServer
      )
      const client = () => limiterIn(ServiceBackend.layer({ target: server.address, deadline: "10 seconds" }))
      return { owner: yield* client(), other: yield* client(), randomBits: 128, ids: 1000 }
    }).pipe(Effect.orDie)
  )

/** The per-bit-position count of ones over `ids` (hex strings, all of one length). */
const bitCounts = (ids: ReadonlyArray<string>): Array<number> => {
  const width = (ids[0]?.length ?? 0) * 4
  const ones = Array<number>(width).fill(0)
  for (const id of ids) {
    const bytes = Buffer.from(id, "hex")
    for (let bit = 0; bit < width; bit++) {
      if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) ones[bit]!++
    }
  }
  return ones
}

const suite = (door: string, clients: Layer.Layer<TwoClients>) =>
  layer(clients, { excludeTestServices: true, timeout: 120_000 })(door, (it) => {
    it.effect("ids are lowercase hex, never repeat, and carry at least 128 random bits", () =>
      Effect.gen(function*() {
        const { ids: count, owner, randomBits } = yield* TwoClients
        const ids = yield* Effect.forEach(
          Array.from({ length: count }),
          () =>
            Effect.tap(
              owner.leases.acquire(many.name, "k"),
              (admission) => owner.leases.release(admission.leaseId, false)
            ).pipe(Effect.map((admission) => admission.leaseId)),
          { concurrency: 16 }
        )
        for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}(?:[0-9a-f]{8})?$/)
        expect(new Set(ids).size).toBe(count)

        // A fair bit is one in about half the ids: within 6 standard deviations (sqrt(n) / 2 each way).
        const ones = bitCounts(ids)
        const tolerance = 6 * Math.sqrt(count) / 2
        const fair = ones.filter((n) => Math.abs(n - count / 2) <= tolerance).length
        const fixed = ones.filter((n) => n === 0 || n === count).length
        console.log(
          `[lease ids: ${door}] ${count} ids, all distinct; ${fair} balanced bits, ${fixed} fixed (routing tag) bits`
        )
        expect(fair + fixed).toBe(ones.length)
        expect(fair).toBeGreaterThanOrEqual(randomBits)
      }), { timeout: 120_000 })

    it.effect(
      "another client cannot release a lease by guessing; only the id itself releases it",
      () =>
        Effect.gen(function*() {
          const { other, owner } = yield* TwoClients
          const held = yield* Effect.forEach([1, 2], () => owner.leases.acquire(pair.name, "owner"))
          expect(held.every((a) => a.held)).toBe(true)
          const [first, second] = held.map((a) => a.leaseId) as [string, string]

          const hex = "0123456789abcdef"
          const nearMisses = [first, second].flatMap((id) => [
            ...Array.from(id).flatMap((digit, at) =>
              Array.from(hex).filter((d) => d !== digit).map((d) => id.slice(0, at) + d + id.slice(at + 1))
            ),
            id.toUpperCase(),
            ` ${id}`,
            `${id}\n`,
            id.slice(0, 31),
            `${id}0`,
            `${id.slice(0, 16)}`
          ])
          const randomIds = Array.from({ length: 300 }, () => randomBytes(16).toString("hex"))
          // The real id's length, with its routing tag and the 32 bits after it (a Memory id's slot) kept.
          const sameTag = Array.from(
            { length: 300 },
            () => first.slice(0, first.length - 24) + randomBytes(12).toString("hex")
          )
          const guesses = [...nearMisses, ...randomIds, ...sameTag]
          yield* Effect.forEach(guesses, (guess, i) => other.leases.release(guess, i % 2 === 0), {
            concurrency: 16,
            discard: true
          })

          // Nothing was freed: the ceiling is still full, and the owner's leases are both live.
          const refused = yield* Effect.scoped(other.admit(pair.name, "other"))
          expect(refused.held).toBe(false)
          expect(refused.bindingAxis).toBe("concurrency")
          const beat = yield* owner.leases.heartbeat([first, second])
          expect([...beat.live].sort()).toEqual([first, second].sort())
          console.log(`[lease guessing: ${door}] ${guesses.length} guessed releases freed nothing`)

          // The id itself is the capability (as in the reference server): with it, the slot comes back.
          yield* other.leases.release(first, false)
          const admitted = yield* Effect.scoped(Effect.map(other.admit(pair.name, "other"), (a) => a.held))
          expect(admitted).toBe(true)
          expect((yield* owner.leases.heartbeat([first])).reclaimed).toEqual([first])
          yield* owner.leases.release(second, false)
        }),
      { timeout: 120_000 }
    )
  })

describe("lease ids are unguessable capabilities", () => {
  suite("memory", memoryClients)
  suite("redis", redisClients)
  suite("service over memory", serviceClients("memory"))
  suite("service over redis", serviceClients("redis"))
})
