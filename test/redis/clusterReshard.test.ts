/**
 * Checks on a real Redis Cluster while a slot changes owner (resharding): each primary's share of a
 * `checkMany` is one pipeline written on the primary's own connection, and a single check is written on
 * its slot's primary connection too, so a call of a slot that moved comes back with a redirection and must
 * be sent again to the slot's new owner, never applied twice.
 *
 * - MOVED: a slot (with its keys) is moved to another primary behind the client's back (no slot refresh);
 *   the next batch answers every key as if nothing moved, each check applied exactly once (the counts in
 *   Redis), and the old owner did answer MOVED (its error stats).
 * - ASK: a slot is left half-migrated (its keys already on the importing primary). A redirected call of a
 *   script with two keys (the state key and its block key, which does not exist) is refused by the
 *   importing node with TRYAGAIN until the migration ends, so the batch either answers or fails typed; the
 *   counts show no check applied twice, and once the migration ends, the same batch answers again.
 * - MOVED on single checks: concurrent checks of the moved slot and of others all answer, each applied once.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import { keySlot, RedisCluster, type RedisClusterHandle, slotIn } from "../support/redisCluster.js"
import { isErrorReply, type RespValue } from "../support/redisNode.js"

const LIMIT = 10
const policy: LimiterPolicy = {
  kind: "limiter",
  name: "reshard",
  prefix: "rs",
  maxKeys: 100_000,
  strategy: { kind: "fixedWindow", limit: LIMIT, windowMs: 600_000 }
}

const text = (reply: RespValue): string => {
  if (isErrorReply(reply)) throw new Error(reply.error)
  return String(reply)
}

/** A command on one node (no redirection followed); fails on an error reply. */
const on = (cluster: RedisClusterHandle, port: number, ...args: Array<string>) =>
  Effect.promise(() => cluster.command(args, port)).pipe(Effect.map(text))

/** Moves `slot`'s keys from primary `from` to `to` (IMPORTING, MIGRATING, MIGRATE); `finish` hands the slot over. */
const migrate = (
  cluster: RedisClusterHandle,
  slot: number,
  from: { port: number; id: string },
  to: { port: number; id: string },
  finish: boolean
) =>
  Effect.gen(function*() {
    yield* on(cluster, to.port, "CLUSTER", "SETSLOT", String(slot), "IMPORTING", from.id)
    yield* on(cluster, from.port, "CLUSTER", "SETSLOT", String(slot), "MIGRATING", to.id)
    const keys = yield* Effect.promise(() =>
      cluster.command(["CLUSTER", "GETKEYSINSLOT", String(slot), "100"], from.port)
    )
    expect(Array.isArray(keys) && keys.length > 0).toBe(true)
    yield* on(
      cluster,
      from.port,
      "MIGRATE",
      "127.0.0.1",
      String(to.port),
      "",
      "0",
      "5000",
      "KEYS",
      ...(keys as Array<string>)
    )
    if (!finish) return
    yield* on(cluster, to.port, "CLUSTER", "SETSLOT", String(slot), "NODE", to.id)
    yield* on(cluster, from.port, "CLUSTER", "SETSLOT", String(slot), "NODE", to.id)
  })

/** The count of checks applied on each key (fixed window: field `c`), read from whichever primary owns it. */
const counts = (cluster: RedisClusterHandle, keys: ReadonlyArray<string>) =>
  Effect.forEach(
    keys,
    (key) =>
      Effect.promise(() => cluster.command(["HGET", `rs:${key}`, "c"])).pipe(Effect.map((reply) => Number(text(reply))))
  )

/** How many MOVED errors the node on `port` has answered (INFO errorstats). */
const movedCount = (cluster: RedisClusterHandle, port: number) =>
  Effect.map(
    on(cluster, port, "INFO", "errorstats"),
    (info) => Number(/errorstat_MOVED:count=(\d+)/.exec(info)?.[1] ?? 0)
  )

/**
 * The cluster, a door over it that never reads the slot map again by itself, 40 keys named `name-i`, the
 * slot of the first, its owner (`from`) and another primary (`to`).
 */
const setup = (name: string) =>
  Effect.gen(function*() {
    const cluster = yield* RedisCluster
    const limiter = yield* RedisBackend.make({
      policies: [policy],
      redis: { cluster: cluster.seeds, options: { slotsRefreshInterval: 0 } }
    })
    const primaries = yield* Effect.promise(() => cluster.primaries())
    const keys = Array.from({ length: 40 }, (_, i) => `${name}-${i}`)
    const slot = keySlot(`rs:${keys[0]}`)
    const from = primaries.find((p) => slotIn(slot, p.slots))!
    const to = primaries.find((p) => p !== from)!
    return { cluster, limiter, keys, slot, from, to }
  })

layer(RedisCluster.layer, { timeout: 90_000, excludeTestServices: true })("checks while a slot moves", (it) => {
  it.scoped("MOVED: a slot moved behind the client's back; every key answered, each check applied once", () =>
    Effect.gen(function*() {
      const { cluster, from, keys, limiter, slot, to } = yield* setup("moved")

      const first = yield* limiter.checkMany("reshard", keys)
      expect(first.map((d) => [d.allowed, d.remaining])).toEqual(keys.map(() => [true, LIMIT - 1]))

      yield* migrate(cluster, slot, from, to, true)
      const movedBefore = yield* movedCount(cluster, from.port)
      const second = yield* limiter.checkMany("reshard", keys)
      expect(second.map((d) => [d.allowed, d.remaining])).toEqual(keys.map(() => [true, LIMIT - 2]))
      expect(yield* movedCount(cluster, from.port)).toBeGreaterThan(movedBefore)
      expect(yield* counts(cluster, keys)).toEqual(keys.map(() => 2))
    }))

  it.scoped("ASK: a half-migrated slot; the batch answers or fails typed, never applies a check twice", () =>
    Effect.gen(function*() {
      const { cluster, from, keys, limiter, slot, to } = yield* setup("asked")

      yield* limiter.checkMany("reshard", keys)
      yield* migrate(cluster, slot, from, to, false)
      const during = yield* Effect.either(limiter.checkMany("reshard", keys))
      if (Either.isLeft(during)) expect(["ServiceUnavailable", "BackendError"]).toContain(during.left._tag)

      // The migration ends (the counts are read once every key has one owner again).
      yield* on(cluster, to.port, "CLUSTER", "SETSLOT", String(slot), "NODE", to.id)
      yield* on(cluster, from.port, "CLUSTER", "SETSLOT", String(slot), "NODE", to.id)
      const afterDuring = yield* counts(cluster, keys)
      for (const count of afterDuring) expect([1, 2]).toContain(count)
      if (Either.isRight(during)) {
        expect(during.right.map((d) => d.remaining)).toEqual(afterDuring.map((count) => LIMIT - count))
      }
      const after = yield* limiter.checkMany("reshard", keys)
      expect(after.map((d) => d.remaining)).toEqual(afterDuring.map((count) => LIMIT - count - 1))
      expect(yield* counts(cluster, keys)).toEqual(afterDuring.map((count) => count + 1))
    }))

  it.scoped("MOVED on a single check: written to the old owner, answered by the new one, applied once", () =>
    Effect.gen(function*() {
      const { cluster, from, keys, limiter, slot, to } = yield* setup("single")
      // A single check is written straight on its slot's primary connection (not through the cluster
      // client's routing); after the slot moves behind the client's back, that primary answers MOVED and
      // the check is sent again through the cluster client, which follows it.
      const moving = keys.filter((key) => keySlot(`rs:${key}`) === slot)
      const staying = keys.filter((key) => keySlot(`rs:${key}`) !== slot).slice(0, 3)
      for (const key of [...moving, ...staying]) {
        expect((yield* limiter.check("reshard", key)).remaining).toBe(LIMIT - 1)
      }

      yield* migrate(cluster, slot, from, to, true)
      const movedBefore = yield* movedCount(cluster, from.port)
      const answers = yield* Effect.forEach([...moving, ...staying], (key) => limiter.check("reshard", key), {
        concurrency: "unbounded"
      })
      expect(answers.map((d) => [d.allowed, d.remaining])).toEqual([...moving, ...staying].map(() => [true, LIMIT - 2]))
      expect(yield* movedCount(cluster, from.port)).toBeGreaterThan(movedBefore)
      expect(yield* counts(cluster, [...moving, ...staying])).toEqual([...moving, ...staying].map(() => 2))
    }))
})
