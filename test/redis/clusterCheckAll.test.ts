/**
 * The multi-check on a real Redis Cluster (three primaries): its keys run in one script, so they must
 * share a slot. Keys in different slots are refused before anything is sent, with an `InvalidArgument`
 * that says to use a hash tag (never Redis's CROSSSLOT), and nothing is written; keys sharing a hash tag
 * `{…}` run all or nothing on the primary that owns their slot.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { keySlot, RedisCluster } from "../support/redisCluster.js"

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "user",
    prefix: "cu",
    maxKeys: 100,
    strategy: { kind: "gcra", limit: 2, periodMs: 600_000, burst: 2 }
  },
  { kind: "meter", name: "tokens", prefix: "ct", maxKeys: 100, budget: 10, windowMs: 600_000, shared: false },
  {
    kind: "limiter",
    name: "org",
    prefix: "co",
    maxKeys: 100,
    strategy: { kind: "fixedWindow", limit: 1, windowMs: 600_000 }
  }
]

layer(RedisCluster.layer, { timeout: 60_000, excludeTestServices: true })("checkAll on a Redis Cluster", (it) => {
  it.scoped("keys in different slots: InvalidArgument naming the hash tag, nothing written", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisCluster
      const limiter = yield* RedisBackend.make({ policies, redis: { cluster: cluster.seeds } })
      // "cu:alice" and "co:acme" hash to different slots.
      expect(keySlot("cu:alice")).not.toBe(keySlot("co:acme"))
      const error = yield* Effect.flip(
        limiter.checkAll([{ policy: "user", key: "alice" }, { policy: "org", key: "acme" }])
      )
      expect(error._tag).toBe("InvalidArgument")
      expect(error.message).toContain("checks[1].key")
      expect(error.message).toContain("hash tag")
      expect(error.message).not.toContain("CROSSSLOT")
      expect((yield* limiter.peek("user", "alice")).remaining).toBe(2)
      expect((yield* limiter.peek("org", "acme")).remaining).toBe(1)
    }))

  it.scoped("keys sharing a hash tag run all or nothing in one script", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisCluster
      const limiter = yield* RedisBackend.make({ policies, redis: { cluster: cluster.seeds } })
      const checks = [
        { policy: "user", key: "{acme}:alice" },
        { policy: "tokens", key: "{acme}", cost: 4 },
        { policy: "org", key: "{acme}" }
      ]
      const first = yield* limiter.checkAll(checks)
      expect(first.decisions.map((d) => [d.allowed, d.remaining])).toEqual([[true, 1], [true, 6], [true, 0]])
      const second = yield* limiter.checkAll(checks)
      expect([second.allowed, second.binding]).toEqual([false, 2])
      // org denied: user and tokens kept what the first call left.
      expect((yield* limiter.peek("user", "{acme}:alice")).remaining).toBe(1)
      expect((yield* limiter.peek("tokens", "{acme}")).remaining).toBe(6)
    }))
})
