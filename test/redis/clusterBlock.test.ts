/**
 * Admin blocks on a real Redis Cluster (three primaries): a key's block lives beside its state key in
 * the same slot (`Slots.blockKeyOf`), so the one script that decides a check reads both on the node that
 * owns them. Checked with the cluster's own `CLUSTER KEYSLOT` for plain keys, hash-tagged keys, keys under
 * a deployment `keyPrefix` and keys with a `}` but no hash tag; then a block on plain and hash-tagged keys
 * denies single checks, batches (one pipeline per node) and a multi-check, and unblock / reset lift it.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { blockKeyOf, slotOf } from "../../src/redis/Slots.js"
import { make as makeFront } from "../../src/services/RateLimiter.js"
import * as RateLimiterAdmin from "../../src/services/RateLimiterAdmin.js"
import { RedisCluster } from "../support/redisCluster.js"

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "user",
    prefix: "bu",
    maxKeys: 100,
    strategy: { kind: "gcra", limit: 5, periodMs: 600_000, burst: 5 }
  },
  { kind: "meter", name: "tokens", prefix: "bt", maxKeys: 100, budget: 10, windowMs: 600_000, shared: false }
]

/** State keys as the store writes them: plain, tagged, prefixed, and with a `}` but no tag. */
const stateKeys = [
  "bu:alice",
  "bu:{acme}:bob",
  "tk:bu:alice",
  "tk:bu:{acme}:bob",
  "bu:a}b",
  "bu:{}x",
  "bu:{x",
  "bu:ключ-ü"
]

layer(RedisCluster.layer, { timeout: 60_000, excludeTestServices: true })("admin blocks on a Redis Cluster", (it) => {
  it.scoped("every block key is in its state key's slot, as the cluster computes it", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisCluster
      const slots = new Set<number>()
      for (const key of stateKeys) {
        const block = blockKeyOf(key)
        const [state, blocked] = yield* Effect.promise(() =>
          Promise.all([
            cluster.command(["CLUSTER", "KEYSLOT", key]),
            cluster.command(["CLUSTER", "KEYSLOT", block])
          ])
        )
        expect([key, block, blocked]).toEqual([key, block, state])
        expect(slotOf(block)).toBe(state)
        slots.add(Number(state))
      }
      // The keys span several slots (the check would pass trivially on one).
      expect(slots.size).toBeGreaterThan(3)
    }))

  for (const keyPrefix of [undefined, "tk"]) {
    it.scoped(`plain and hash-tagged keys block, batch and multi-check per slot (keyPrefix ${keyPrefix ?? "none"})`, () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const store = yield* RedisBackend.makeStore({
          policies,
          redis: { cluster: cluster.seeds },
          ...(keyPrefix === undefined ? {} : { keyPrefix })
        })
        const limiter = yield* makeFront(store)
        const admin = RateLimiterAdmin.make(store)
        const prefix = keyPrefix === undefined ? "" : `${keyPrefix}:`
        const keys = ["alice", "{acme}:bob", "a}b", "carol", "{acme}:dave"]
        for (const key of ["alice", "{acme}:bob", "a}b"]) {
          const blocked = yield* admin.block("user", key, "10 minutes")
          expect([blocked.allowed, blocked.remaining]).toEqual([false, 0])
          const ends = Number(
            yield* Effect.promise(() => cluster.command(["GET", blockKeyOf(`${prefix}bu:${key}`)]) as Promise<string>)
          )
          expect(blocked.resetAt).toBe(ends)
          const denied = yield* limiter.check("user", key)
          expect([key, denied.allowed, denied.resetAt]).toEqual([key, false, ends])
        }
        // A batch over keys of several slots (one pipeline per node): the blocked ones denied, the rest not.
        const many = yield* limiter.checkMany("user", keys)
        expect(many.map((d) => d.allowed)).toEqual([false, false, false, true, true])
        // A multi-check on one hash tag: the blocked dimension denies it all; nothing written.
        const all = yield* limiter.checkAll([
          { policy: "user", key: "{acme}:bob" },
          { policy: "tokens", key: "{acme}", cost: 4 }
        ])
        expect([all.allowed, all.binding]).toEqual([false, 0])
        expect((yield* limiter.peek("tokens", "{acme}")).remaining).toBe(10)
        // A budget blocks too.
        yield* admin.block("tokens", "{acme}", "10 minutes")
        expect((yield* limiter.debit("tokens", "{acme}", 1)).allowed).toBe(false)
        // Unblock and reset lift blocks; the blocked keys' state was never written.
        expect((yield* admin.unblock("user", "alice")).remaining).toBe(5)
        yield* admin.reset("user", "{acme}:bob")
        yield* admin.reset("user", "a}b")
        yield* admin.reset("tokens", "{acme}")
        expect((yield* limiter.checkMany("user", keys)).map((d) => [d.allowed, d.remaining])).toEqual([
          [true, 4],
          [true, 4],
          [true, 4],
          [true, 3],
          [true, 3]
        ])
        for (const key of keys) yield* admin.reset("user", key)
      }))
  }
})
