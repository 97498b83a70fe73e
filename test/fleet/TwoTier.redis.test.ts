/**
 * Two-tier policies over the Redis door and the Redis coordinator (a private `redis-server`, the Redis
 * clock): two wrappers (two "servers") leasing one windowed budget admit at most its limit per window,
 * the leased units are the strategy's own state (a plain check of the same key on the Redis door sees
 * them), and leasing on a non-windowed strategy takes whole batches through the Redis door.
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Config from "../../src/Config.js"
import * as RedisCoordinator from "../../src/coordinator/RedisCoordinator.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as TwoTier from "../../src/layers/TwoTier.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { RedisServer } from "../support/redisServer.js"

const config = `
limiters:
  leased:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    twoTier:
      mode: leased
      batch: 5
      windowCoupled: true
  plainView:
    strategy: fixedWindow
    limit: 12
    windowMs: 60000
    prefix: leased
  bucket:
    strategy: tokenBucket
    capacity: 6
    refillPerSec: 0.001
    twoTier:
      mode: leased
      batch: 4
`

/** One "server": the two-tier wrapper over its own Redis door and Redis coordinator. */
const serverOn = (url: string) =>
  Effect.gen(function*() {
    const policies = yield* Config.parse(config, "test")
    const context = yield* Layer.build(
      TwoTier.layer({ policies }).pipe(
        Layer.provide(RedisBackend.layer({ policies, redis: url })),
        Layer.provide(RedisCoordinator.layer({ redis: url }))
      )
    )
    return Context.get(context, RateLimiter)
  })

layer(RedisServer.layer, { timeout: 60_000 })("TwoTier over Redis", (it) => {
  it.scoped("two servers share one budget; the leased units are the strategy's state in Redis", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const a = yield* serverOn(redis.url)
      const b = yield* serverOn(redis.url)
      // Stay inside one 60 s window.
      const intoWindow = Date.now() % 60_000
      if (intoWindow > 55_000) yield* Effect.sleep(60_000 - intoWindow + 10)
      const decisions = []
      for (let i = 0; i < 10; i++) {
        decisions.push(yield* a.check("leased", "k"))
        decisions.push(yield* b.check("leased", "k"))
      }
      const allowed = decisions.filter((d) => d.allowed)
      expect(allowed.length).toBe(12)
      expect(new Set(allowed.map((d) => d.resetAt)).size).toBe(1)
      // The Redis door reading the same key (same prefix, same strategy) sees the budget spent.
      const view = yield* a.check("plainView", "k")
      expect(view).toMatchObject({ allowed: false, remaining: 0, limit: 12 })
    }))

  it.scoped("leasing on a token bucket takes whole batches through the Redis door", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer
      const a = yield* serverOn(redis.url)
      const b = yield* serverOn(redis.url)
      const results = [
        yield* a.check("bucket", "t"),
        yield* b.check("bucket", "t"),
        yield* a.check("bucket", "t"),
        yield* b.check("bucket", "t")
      ]
      // Each server leased 4 of the 6 tokens at its first check; the second batch did not fit.
      expect(results.map((d) => d.allowed)).toEqual([true, false, true, false])
      expect(results[1]).toMatchObject({ allowed: false, limit: 6 })
    }))
})
