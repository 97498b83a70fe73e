/**
 * Two server instances over one Redis (the Redis store): an admission made through one can be renewed
 * and released through the other, because the leases live in Redis. With the memory store each
 * instance keeps its own leases, so the other one reports the lease as unknown (reclaimed).
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import type { ServerStore } from "../../src/server/ThrottleKitServer.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { conformancePolicies } from "../support/conformance.js"
import { redisServer } from "../support/redisServer.js"
import { serviceOver } from "./support.js"

/** A ServiceBackend to its own server instance over `store`, built in the current scope. */
const instance = (store: ServerStore) =>
  Effect.map(
    Layer.build(serviceOver({ policies: conformancePolicies, store })),
    (context) => Context.get(context, RateLimiter)
  )

const fillPool = (limiter: RateLimiterService, key: string) =>
  Effect.forEach([1, 2, 3], () => limiter.leases.acquire("pool", key))

describe("leases across server instances", () => {
  it.live(
    "with the Redis store, another instance renews and releases a lease",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { url } = yield* redisServer
        const a = yield* instance({ kind: "redis", redis: url })
        const b = yield* instance({ kind: "redis", redis: url })
        const key = `fleet-${randomUUID().slice(0, 8)}`

        const held = yield* fillPool(a, key)
        expect(held.every((admission) => admission.held)).toBe(true)
        // The pool is shared: instance b sees it full.
        expect((yield* b.leases.acquire("pool", key)).held).toBe(false)

        const ids = held.map((admission) => admission.leaseId)
        const beat = yield* b.leases.heartbeat(ids)
        expect(beat.live).toEqual(ids)
        expect(beat.reclaimed).toEqual([])

        yield* b.leases.release(ids[0]!, false)
        const again = yield* a.leases.acquire("pool", key)
        expect(again.held).toBe(true)
        expect((yield* a.leases.heartbeat([ids[0]!])).reclaimed).toEqual([ids[0]!])
        yield* Effect.forEach([...ids.slice(1), again.leaseId], (id) => b.leases.release(id, false))
      })),
    { timeout: 60_000 }
  )

  it.live("with the memory store, each instance knows only its own leases", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* instance({ kind: "memory" })
      const b = yield* instance({ kind: "memory" })
      const key = `local-${randomUUID().slice(0, 8)}`
      const held = yield* fillPool(a, key)
      const ids = held.map((admission) => admission.leaseId)
      const beat = yield* b.leases.heartbeat(ids)
      expect(beat.live).toEqual([])
      expect(beat.reclaimed).toEqual(ids)
      expect((yield* b.leases.acquire("pool", key)).held).toBe(true)
    })), { timeout: 60_000 })
})
