/**
 * Layer swapping: one `Effect.gen` program, written against `RateLimiter` only, run unchanged on the
 * Memory, Redis and Service doors (the Service door over both of our server's stores) gives the same
 * decisions and the same typed errors.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, type Layer } from "effect"
import { randomUUID } from "node:crypto"
import type { Decision } from "../../src/Decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { conformancePolicies } from "../support/conformance.js"
import { redisServer } from "../support/redisServer.js"
import { serviceOverMemory, serviceOverRedis } from "./support.js"

/** The time-independent part of a decision. */
const shape = (d: Decision) => ({
  allowed: d.allowed,
  limit: d.limit,
  remaining: d.remaining,
  waits: d.retryAfterMs > 0
})

/** The program under test: it knows nothing about where the limits live. */
const program = (ns: string) =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const a = `${ns}:a`
    const b = `${ns}:b`
    const burst: Array<ReturnType<typeof shape>> = []
    for (let i = 0; i < 6; i++) burst.push(shape(yield* limiter.check("burst", a)))
    const many = (yield* limiter.checkMany("window", [a, b, a, a])).map(shape)
    const peek = shape(yield* limiter.peek("burst", a))
    const forecast = (yield* limiter.forecast("bucket", a, 3)).spendableNow
    const debits = [
      shape(yield* limiter.debit("tokens", a, 7)),
      shape(yield* limiter.debit("tokens", a, 7)),
      shape(yield* limiter.debit("tokens", a, 1))
    ]
    const admissions = yield* Effect.scoped(Effect.gen(function*() {
      const held = yield* Effect.forEach([1, 2, 3, 4], () => limiter.admit("pool", a))
      return held.map((admission) => [admission.held, admission.bindingAxis])
    }))
    const errors = [
      (yield* Effect.flip(limiter.check("missing", a)))._tag,
      (yield* Effect.flip(limiter.debit("burst", a)))._tag,
      (yield* Effect.flip(limiter.check("burst", a, -1)))._tag
    ]
    return { burst, many, peek, forecast, debits, admissions, errors }
  })

const redisUrl = Effect.suspend(() => {
  const external = process.env["REDIS_URL"]
  return external !== undefined && external !== "" ? Effect.succeed(external) : Effect.map(redisServer, (s) => s.url)
})

const allow = (limit: number, remaining: number) => ({ allowed: true, limit, remaining, waits: false })
const deny = (limit: number) => ({ allowed: false, limit, remaining: 0, waits: true })

describe("layer swapping", () => {
  it.live(
    "the same program gives the same decisions on Memory, Redis and Service (memory and Redis stores)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const url = yield* redisUrl
        const doors: ReadonlyArray<readonly [string, Layer.Layer<RateLimiter, unknown>]> = [
          ["memory", MemoryBackend.layer({ policies: conformancePolicies })],
          ["redis", RedisBackend.layer({ policies: conformancePolicies, redis: url })],
          ["service → memory", serviceOverMemory(conformancePolicies)],
          ["service → redis", serviceOverRedis(conformancePolicies, url)]
        ]
        const results: Array<readonly [string, unknown]> = []
        for (const [name, door] of doors) {
          // A fresh namespace per door: the Redis-backed doors share one Redis.
          results.push([name, yield* Effect.provide(program(`swap-${randomUUID().slice(0, 8)}`), door)])
        }
        const expected = {
          burst: [allow(5, 4), allow(5, 3), allow(5, 2), allow(5, 1), allow(5, 0), deny(5)],
          many: [allow(2, 1), allow(2, 1), allow(2, 0), deny(2)],
          peek: deny(5),
          forecast: 3,
          debits: [allow(10, 3), allow(10, 0), deny(10)],
          admissions: [[true, ""], [true, ""], [true, ""], [false, "concurrency"]],
          errors: ["PolicyNotFound", "OperationNotSupported", "InvalidArgument"]
        }
        for (const [name, result] of results) expect([name, result]).toEqual([name, expected])
      })),
    { timeout: 60_000 }
  )
})
