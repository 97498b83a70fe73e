/**
 * A scoped admit holds its slot until its scope closes, however long, on every door: five holders of a
 * ceiling-5 policy hold for three lease TTLs while a sixth admit is tried every 50 ms and denied each
 * time; once the five scopes close, five admits are granted again. Real clocks, real Redis, the real
 * server on loopback; the lease TTL is 300 ms so the hold spans three of them.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { serviceOver } from "../service/support.js"
import { redisServer } from "../support/redisServer.js"
import { pool } from "./support.js"

const TTL_MS = 300
const CEILING = 5
const policies = [pool("pool", CEILING)]

const memory = MemoryBackend.layer({ policies, leaseTtlMs: TTL_MS })

const redis = Layer.unwrapScoped(
  Effect.map(redisServer, (server) => RedisBackend.layer({ policies, redis: server.url, leaseTtlMs: TTL_MS }))
)

const service = serviceOver({ policies, leaseTtlMs: TTL_MS }, { leaseTtlMs: TTL_MS })

const holdsThroughThreeTtls = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const release = yield* Effect.makeLatch(false)
  const held = yield* Effect.makeLatch(false)
  let holding = 0
  const holders = yield* Effect.forEach(
    Array.from({ length: CEILING }, (_, i) => i),
    (i) =>
      Effect.fork(Effect.scoped(Effect.gen(function*() {
        const admission = yield* limiter.admit("pool", `holder-${i}`)
        expect(admission.held).toBe(true)
        if (++holding === CEILING) yield* held.open
        yield* release.await
        return admission.reclaimed
      })))
  )
  yield* held.await

  // A sixth admit is denied throughout three TTLs (a denial holds nothing, so each try is fresh).
  const tries = Math.ceil((3 * TTL_MS) / 50)
  for (let i = 0; i < tries; i++) {
    const sixth = yield* Effect.scoped(limiter.admit("pool", "sixth"))
    expect(sixth.held, `try ${i} at ~${i * 50} ms`).toBe(false)
    expect(sixth.bindingAxis).toBe("concurrency")
    yield* Effect.sleep(Duration.millis(50))
  }

  yield* release.open
  const reclaimed = yield* Effect.forEach(holders, Fiber.join)
  expect(reclaimed).toEqual(Array.from({ length: CEILING }, () => false))

  // Every slot came back: five admits are granted again.
  const again = yield* Effect.scoped(
    Effect.forEach(Array.from({ length: CEILING }, (_, i) => i), (i) => limiter.admit("pool", `again-${i}`))
  )
  expect(again.map((a) => a.held)).toEqual(Array.from({ length: CEILING }, () => true))
})

describe("a scoped admit holds until its scope closes", () => {
  layer(memory, { excludeTestServices: true })("memory", (it) => {
    it.effect("five holders for 3× the lease TTL", () => holdsThroughThreeTtls, 20_000)
  })
  layer(redis, { excludeTestServices: true, timeout: 30_000 })("redis", (it) => {
    it.effect("five holders for 3× the lease TTL", () => holdsThroughThreeTtls, 20_000)
  })
  layer(service, { excludeTestServices: true, timeout: 30_000 })("service", (it) => {
    it.effect("five holders for 3× the lease TTL", () => holdsThroughThreeTtls, 20_000)
  })
})
