/**
 * The fleet-wide shaper on a real `redis-server`: the shared suite under `TestClock` (`clock: "effect"`),
 * two processes' worth of clients sharing one rate per key, and the Lua against the engine, reservation
 * for reservation (delays, refusals and the exact departures).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import * as fc from "fast-check"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as ShaperEngine from "../../src/engine/shaper.js"
import * as RedisShaper from "../../src/layers/RedisShaper.js"
import type { ShaperPolicy } from "../../src/services/Shaper.js"
import { redisServer } from "../support/redisServer.js"
import { shapingSuite } from "./suite.js"

const partner: ShaperPolicy = { name: "partner", prefix: "partner", ratePerSec: 10, maxQueueMs: 250, maxKeys: 100 }
const slow: ShaperPolicy = { name: "slow", prefix: "slow", ratePerSec: 3, maxQueueMs: 5000, maxKeys: 100 }

/** A Redis URL: `REDIS_URL`, or a private server for the scope. */
const redisUrl = Effect.suspend(() => {
  const external = process.env["REDIS_URL"]
  return external !== undefined && external !== "" ? Effect.succeed(external) : Effect.map(redisServer, (s) => s.url)
})

const over = (shapers: ReadonlyArray<ShaperPolicy>) =>
  Layer.unwrapScoped(Effect.map(redisUrl, (url) => RedisShaper.layer({ shapers, redis: url, clock: "effect" })))

shapingSuite("redis (Effect clock)", over([partner, slow]), "partner", "slow")

describe("RedisShaper", () => {
  it.scoped("clients on one Redis share one rate per key (the server's clock)", () =>
    Effect.gen(function*() {
      const url = yield* redisUrl
      const a = yield* RedisShaper.make({ shapers: [{ ...partner, maxQueueMs: 60_000 }], redis: url })
      const b = yield* RedisShaper.make({ shapers: [{ ...partner, maxQueueMs: 60_000 }], redis: url })
      const key = randomUUID()
      const first = yield* a.reserve("partner", key)
      const second = yield* b.reserve("partner", key)
      const third = yield* a.reserve("partner", key)
      // Each reservation takes the next 100 ms after the last: the departures are spaced exactly.
      expect([second.start - first.start, third.start - second.start]).toEqual([100, 100])
      expect(second.delayMs).toBeGreaterThan(0)
      expect(yield* b.giveBack(third)).toBe(true)
      expect((yield* b.reserve("partner", key)).start).toBe(third.start)
    }))

  it.scoped("the Lua reserves as the engine, bit for bit (delays, refusals, departures)", () =>
    Effect.gen(function*() {
      const url = yield* redisUrl
      const shapers: ReadonlyArray<ShaperPolicy> = [
        // Spacings of 500 ms and more: a stored departure lives at least that long in real time, far
        // longer than one step of this loop.
        { name: "a", prefix: "a", ratePerSec: 2, maxQueueMs: 1900, maxKeys: 10 },
        { name: "b", prefix: "b", ratePerSec: 0.37, maxQueueMs: 20_000, maxKeys: 10 },
        { name: "c", prefix: "c", ratePerSec: 1.9, maxQueueMs: 3, maxKeys: 10 }
      ]
      const shaper = yield* RedisShaper.make({ shapers, redis: url, clock: "effect" })
      const raw = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1 })),
        (client) => Effect.sync(() => client.disconnect())
      )
      const runs = fc.sample(
        fc.array(fc.record({ advance: fc.integer({ min: 0, max: 3000 }), cost: fc.integer({ min: 1, max: 4 }) }), {
          minLength: 5,
          maxLength: 40
        }),
        { numRuns: 12, seed: 42 }
      )
      const seen = { accepted: 0, refused: 0 }
      for (const [i, ops] of runs.entries()) {
        const policy = shapers[i % shapers.length]!
        const engine = ShaperEngine.make(policy)
        const key = randomUUID()
        let now = 1_700_000_000_000 + i * 7
        let stored: number | undefined
        yield* TestClock.setTime(now)
        for (const op of ops) {
          now += op.advance
          yield* TestClock.setTime(now)
          const expected = engine.reserve(stored !== undefined && stored > now ? stored : undefined, now, op.cost)
          if (expected.accepted) stored = expected.end
          seen[expected.accepted ? "accepted" : "refused"]++
          const got = yield* shaper.reserve(policy.name, key, op.cost)
          // Redis expires the key on its own (real) clock while this test's clock is virtual: the key is
          // made persistent after each call, so only the script's arithmetic decides. Its TTL first: at
          // most the engine's (real time only shortens it).
          const storeKey = `${policy.prefix}:${key}`
          if (expected.accepted) {
            const ttl = yield* Effect.promise(() => raw.pttl(storeKey))
            expect(ttl).toBeLessThanOrEqual(expected.expiresAt - now)
          }
          yield* Effect.promise(() => raw.persist(storeKey))
          expect([got.accepted, got.delayMs, got.decision.retryAfterMs, got.start, got.end, got.decision.remaining])
            .toEqual([
              expected.accepted,
              expected.delayMs,
              expected.retryAfterMs,
              expected.start,
              expected.end,
              expected.remaining
            ])
        }
      }
      // Both branches were exercised.
      expect(seen.accepted).toBeGreaterThan(20)
      expect(seen.refused).toBeGreaterThan(5)
    }))
})
