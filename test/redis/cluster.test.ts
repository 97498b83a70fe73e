/**
 * The Redis door on a real Redis Cluster (three primaries, each with one replica), where one node's
 * behaviour is not the cluster's:
 * - slots: our `slotOf` is the cluster's own hash: it equals `CLUSTER KEYSLOT` for a few hundred
 *   generated keys (plain, hash-tagged, empty `{}` tags, `{a}{b}`, unclosed braces, unicode, NUL);
 * - per-node script caches: with `SCRIPT FLUSH` on every primary, checks, a cross-node checkMany (one
 *   pipeline per node), peeks and a lease acquire still answer correctly (NOSCRIPT, then EVAL, on each
 *   node), and each consuming call is applied exactly once (the state shows one unit per call);
 * - replicas never decide: with every replica frozen (SIGSTOP), checks, peeks, checkMany and admissions
 *   keep answering within the bound and correctly, and no script ever ran on a replica (command stats);
 *   an adopted `Cluster` client that reads from replicas (`scaleReads: "slave"`) is warned about;
 * - `replicaAcks: 1`: every consuming call is followed by a `WAIT` (counted on the primaries), its write
 *   is on the replica when the answer arrives (read there with READONLY), read-only calls send no WAIT;
 *   with the replicas frozen, consuming calls fail with `ServiceUnavailable` within the bound (the WAIT
 *   gave up), never hang, while peeks still answer.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Cluster, type ClusterOptions, Redis } from "ioredis"
import type { RateLimiterError } from "../../src/Errors.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { loadScripts } from "../../src/redis/Scripts.js"
import { slotOf } from "../../src/redis/Slots.js"
import { warnings } from "../support/logs.js"
import { prng } from "../support/prng.js"
import { RedisCluster, type RedisClusterHandle } from "../support/redisCluster.js"
import { infoFields, respText } from "../support/redisNode.js"
import {
  answersWithin,
  connected,
  expectBounded,
  keysOnEveryPrimary,
  pauseReplicas,
  poolAdmitter,
  primariesOf,
  timed,
  windowLimiter
} from "./topology.js"

/** The bound on every Redis call of these tests. */
const TIMEOUT_MS = 1000

const policies: ReadonlyArray<Policy> = [windowLimiter("window", "cw", 20), poolAdmitter("pool", "cpool", 5)]

/** The door on `cluster` (every call bounded by TIMEOUT_MS), in the scope. */
const backendOn = (cluster: RedisClusterHandle, options: { readonly replicaAcks?: number } = {}) =>
  RedisBackend.make({ policies, redis: { cluster: cluster.seeds }, timeoutMs: TIMEOUT_MS, ...options })

/** Limiter keys of the "window" policy, one on each primary (label keeps tests apart). */
const windowKeys = (cluster: RedisClusterHandle, label: string) =>
  Effect.map(primariesOf(cluster), (primaries) => ({ primaries, keys: keysOnEveryPrimary(primaries, "cw:", label) }))

/** The fixedWindow count (`c`) of each key of the "window" policy, read on its primary. */
const counts = (cluster: RedisClusterHandle, keys: ReadonlyArray<string>) =>
  Effect.promise(() => Promise.all(keys.map((key) => cluster.command(["HGET", `cw:${key}`, "c"]))))

/** `args` sent to each port, replies in order. */
const onEach = (cluster: RedisClusterHandle, ports: ReadonlyArray<number>, args: ReadonlyArray<string>) =>
  Effect.promise(() => Promise.all(ports.map((port) => cluster.node(port).command(args))))

/** The `calls=` of `command` in the INFO commandstats of each port (0 when it never ran). */
const commandCalls = (ports: ReadonlyArray<number>, command: string) =>
  Effect.promise(() =>
    Promise.all(ports.map(async (port) => {
      const stat = infoFields(await respText(port, ["INFO", "commandstats"])).get(`cmdstat_${command}`)
      return stat === undefined ? 0 : Number(/calls=(\d+)/.exec(stat)?.[1])
    }))
  )

const remainingOf = (decisions: ReadonlyArray<{ readonly allowed: boolean; readonly remaining: number }>) =>
  decisions.map((d) => [d.allowed, d.remaining])

// ---------------------------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------------------------

const PIECES = ["a", "b", "z", "0", "9", ":", "-", "_", " ", "#", "é", "ü", "中", "文", "😀", "𝄞", "\t", "\u0000"]

/** A few hundred keys of every shape that chooses a slot differently, from a fixed seed. */
const generatedKeys = (): Array<string> => {
  const rng = prng(20_261_203)
  const text = (min: number, max: number) => Array.from({ length: rng.int(min, max) }, () => rng.pick(PIECES)).join("")
  const shapes: ReadonlyArray<() => string> = [
    () => text(0, 24),
    () => `${text(0, 6)}{${text(1, 8)}}${text(0, 6)}`,
    () => `${text(0, 6)}{}${text(0, 6)}`,
    () => `{}{${text(1, 6)}}`,
    () => `{${text(1, 4)}}{${text(1, 4)}}`,
    () => `${text(0, 6)}{${text(0, 6)}`,
    () => `${text(0, 4)}}${text(0, 4)}{${text(1, 4)}}`,
    () => `{{${text(1, 4)}}}`,
    () => `${rng.pick(["blue", "green"])}:{${text(1, 6)}}#leases`
  ]
  const fixed = ["", "{", "}", "{}", "}{", "{a}{b}", "{}{a}", "a{}b{c}", "{{a}}", "blue:{pool}#leases", "é{é}é"]
  return [...fixed, ...Array.from({ length: 400 }, (_, i) => shapes[i % shapes.length]!())]
}

/** CLUSTER KEYSLOT of each key, asked of the node on `port` in one pipeline. */
const clusterKeyslots = (port: number, keys: ReadonlyArray<string>) =>
  Effect.scoped(Effect.flatMap(
    connected(() => new Redis({ host: "127.0.0.1", port, lazyConnect: true })),
    (client) =>
      Effect.promise(async () => {
        const pipeline = client.pipeline()
        for (const key of keys) pipeline.call("CLUSTER", "KEYSLOT", key)
        const results = (await pipeline.exec()) ?? []
        return results.map(([error, slot]) => error === null ? Number(slot) : `error: ${error.message}`)
      })
  ))

// ---------------------------------------------------------------------------------------------------
// Clients of our own
// ---------------------------------------------------------------------------------------------------

/** A connected cluster client of our own making, safe but for `scaleReads`; closed with the scope. */
const ownCluster = (cluster: RedisClusterHandle, scaleReads: ClusterOptions["scaleReads"]) =>
  connected(() =>
    new Cluster(cluster.seeds, {
      lazyConnect: true,
      enableOfflineQueue: false,
      scaleReads,
      redisOptions: { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 }
    })
  )

layer(RedisCluster.faultLayer, { timeout: 90_000, excludeTestServices: true })(
  "Redis door on a Redis Cluster: slots, script caches, replicas",
  (it) => {
    it.effect("slotOf is CLUSTER KEYSLOT for hundreds of keys of every shape", () =>
      Effect.gen(function*() {
        const cluster = yield* RedisCluster
        const keys = generatedKeys()
        const theirs = yield* clusterKeyslots(cluster.seeds[0]!.port, keys)
        expect(theirs).toHaveLength(keys.length)
        expect(keys.map((key) => ({ key, slot: slotOf(key) }))).toEqual(
          keys.map((key, i) => ({ key, slot: theirs[i] }))
        )
        // The keys are varied: they land on many slots, tagged ones with their tag.
        expect(new Set(theirs).size).toBeGreaterThan(150)
        expect(slotOf("{a}{b}")).toBe(slotOf("a"))
        expect(slotOf("x{}{a}")).not.toBe(slotOf("a"))
      }), 30_000)

    it.effect(
      "SCRIPT FLUSH on every primary: checks, checkMany, peeks and acquires fall back per node, applied once",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys, primaries } = yield* windowKeys(cluster, "cache")
          const ports = primaries.map((primary) => primary.port)
          const catalog = yield* loadScripts()
          const cached = (name: string) => onEach(cluster, ports, ["SCRIPT", "EXISTS", catalog.scripts.get(name)!.sha1])
          const flush = Effect.gen(function*() {
            expect(yield* onEach(cluster, ports, ["SCRIPT", "FLUSH"])).toEqual(ports.map(() => "OK"))
            expect(yield* cached("fixedWindow.check")).toEqual(ports.map(() => [0]))
          })
          const limiter = yield* backendOn(cluster)

          yield* flush
          const checks = yield* Effect.forEach(keys, (key) => limiter.check("window", key))
          expect(remainingOf(checks)).toEqual(keys.map(() => [true, 19]))
          expect(yield* counts(cluster, keys)).toEqual(keys.map(() => "1"))
          // The fallback (EVAL) put the script back in each node's cache.
          expect(yield* cached("fixedWindow.check")).toEqual(ports.map(() => [1]))

          // One pipeline per node, each answered NOSCRIPT for every call, each re-sent once by text.
          yield* flush
          const many = yield* limiter.checkMany("window", [...keys, ...keys])
          expect(remainingOf(many)).toEqual([...keys.map(() => [true, 18]), ...keys.map(() => [true, 17])])
          expect(yield* counts(cluster, keys)).toEqual(keys.map(() => "3"))

          yield* flush
          const peeks = yield* Effect.forEach(keys, (key) => limiter.peek("window", key))
          expect(remainingOf(peeks)).toEqual(keys.map(() => [true, 17]))
          expect(yield* counts(cluster, keys)).toEqual(keys.map(() => "3"))

          yield* flush
          const admission = yield* limiter.leases.acquire("pool", "cache-user")
          expect(admission.held).toBe(true)
          expect(yield* Effect.promise(() => cluster.command(["ZCARD", "{cpool}#leases"]))).toBe(1)
          yield* limiter.leases.release(admission.leaseId, false)
          expect(yield* Effect.promise(() => cluster.command(["ZCARD", "{cpool}#leases"]))).toBe(0)
        })),
      30_000
    )

    it.effect(
      "replicas never decide: with every replica frozen, every call answers within the bound, correctly",
      () =>
        Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys, primaries } = yield* windowKeys(cluster, "frozen")
          const replicas = primaries.flatMap((primary) => primary.replicas)
          expect(replicas).toHaveLength(3)
          expect(yield* onEach(cluster, replicas, ["CONFIG", "RESETSTAT"])).toEqual(replicas.map(() => "OK"))
          yield* Effect.scoped(Effect.gen(function*() {
            const limiter = yield* backendOn(cluster)
            yield* pauseReplicas(cluster)
            // Past the node timeout (1 s): the primaries now see their replicas as failing.
            yield* Effect.sleep(1500)
            const bounded = <A>(label: string, call: Effect.Effect<A, RateLimiterError>) =>
              answersWithin(TIMEOUT_MS, label, call)
            for (let round = 1; round <= 3; round++) {
              for (const key of keys) {
                const decision = yield* bounded(`check ${key}`, limiter.check("window", key))
                expect([decision.allowed, decision.remaining]).toEqual([true, 20 - round])
              }
            }
            const peeks = yield* Effect.forEach(keys, (key) => bounded(`peek ${key}`, limiter.peek("window", key)))
            expect(remainingOf(peeks)).toEqual(keys.map(() => [true, 17]))
            const many = yield* bounded("checkMany", limiter.checkMany("window", keys))
            expect(remainingOf(many)).toEqual(keys.map(() => [true, 16]))
            expect(yield* counts(cluster, keys)).toEqual(keys.map(() => "4"))
            const admission = yield* bounded("acquire", limiter.leases.acquire("pool", "frozen-user"))
            expect(admission.held).toBe(true)
            yield* bounded("release", limiter.leases.release(admission.leaseId, false))
          }))
          // Thawed: whatever had been sent to a replica would have run by now. Nothing was.
          for (const command of ["evalsha", "eval", "evalsha_ro", "eval_ro"]) {
            expect([command, yield* commandCalls(replicas, command)]).toEqual([command, replicas.map(() => 0)])
          }
        }),
      60_000
    )

    it.effect(
      "an adopted Cluster client that reads from replicas is warned about; one on primaries is not",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys } = yield* windowKeys(cluster, "adopted")
          const adopt = (scaleReads: ClusterOptions["scaleReads"], key: string) =>
            Effect.flatMap(ownCluster(cluster, scaleReads), (client) =>
              warnings(Effect.flatMap(
                RedisBackend.make({ policies, redis: { client }, timeoutMs: TIMEOUT_MS }),
                (limiter) => limiter.check("window", key)
              )))
          const [fromReplicas, warned] = yield* adopt("slave", keys[0]!)
          expect(warned).toHaveLength(1)
          expect(warned[0]).toContain("scaleReads: \"master\"")
          expect(warned[0]).toContain("a replica may lag, so it must never decide")
          expect([fromReplicas.allowed, fromReplicas.remaining]).toEqual([true, 19])
          const [fromPrimaries, quiet] = yield* adopt("master", keys[1]!)
          expect(quiet).toEqual([])
          expect([fromPrimaries.allowed, fromPrimaries.remaining]).toEqual([true, 19])
        })),
      30_000
    )

    it.effect(
      "an adopted Cluster client outlives the door without its node listeners",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys } = yield* windowKeys(cluster, "outlives")
          const client = yield* ownCluster(cluster, "master")
          const listening = () => [client.listenerCount("+node"), client.listenerCount("-node")]
          const before = listening()
          const during = yield* Effect.scoped(Effect.gen(function*() {
            const limiter = yield* RedisBackend.make({ policies, redis: { client }, timeoutMs: TIMEOUT_MS })
            expect((yield* limiter.check("window", keys[0]!)).allowed).toBe(true)
            return listening()
          }))
          // The door followed the client's nodes while it ran (one listener each), and no longer does.
          expect(during).toEqual([before[0]! + 1, before[1]! + 1])
          expect(listening()).toEqual(before)
          // The client is still the caller's, open and usable.
          expect(client.status).toBe("ready")
          expect(yield* Effect.promise(() => client.get(`cw:${keys[0]!}:absent`))).toBeNull()
        })),
      30_000
    )

    it.effect(
      "replicaAcks: 1: a WAIT follows every consuming call, and its write is on the replica when it answers",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys, primaries } = yield* windowKeys(cluster, "acked")
          const ports = primaries.map((primary) => primary.port)
          const limiter = yield* backendOn(cluster, { replicaAcks: 1 })
          const readers = yield* Effect.forEach(primaries, (primary) => replicaReader(primary.replicas[0]!))
          expect(yield* onEach(cluster, ports, ["CONFIG", "RESETSTAT"])).toEqual(ports.map(() => "OK"))
          const onReplicas = Effect.promise(() => Promise.all(keys.map((key, i) => readers[i]!.hget(`cw:${key}`, "c"))))
          for (let round = 1; round <= 5; round++) {
            for (const [i, key] of keys.entries()) {
              const decision = yield* limiter.check("window", key)
              expect([decision.allowed, decision.remaining]).toEqual([true, 20 - round])
              expect(yield* Effect.promise(() => readers[i]!.hget(`cw:${key}`, "c"))).toBe(String(round))
            }
          }
          const many = yield* limiter.checkMany("window", keys)
          expect(remainingOf(many)).toEqual(keys.map(() => [true, 14]))
          expect(yield* onReplicas).toEqual(keys.map(() => "6"))
          yield* Effect.forEach(keys, (key) => limiter.peek("window", key))
          // One WAIT per check on each primary, one per node's share of the batch; none for the peeks.
          expect(yield* commandCalls(ports, "wait")).toEqual(ports.map(() => 6))
        })),
      30_000
    )

    it.effect(
      "replicaAcks: 1 with the replicas frozen: consuming calls fail with ServiceUnavailable within the bound",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* RedisCluster
          const { keys } = yield* windowKeys(cluster, "unacked")
          const limiter = yield* backendOn(cluster, { replicaAcks: 1 })
          expect(remainingOf(yield* limiter.checkMany("window", keys))).toEqual(keys.map(() => [true, 19]))
          yield* pauseReplicas(cluster)
          const consuming: ReadonlyArray<readonly [string, Effect.Effect<unknown, RateLimiterError>]> = [
            ...keys.map((key) => [`check ${key}`, limiter.check("window", key)] as const),
            ["checkMany", limiter.checkMany("window", keys)]
          ]
          for (const [label, call] of consuming) {
            const result = yield* timed(call)
            expect(Option.isNone(expectBounded(result, TIMEOUT_MS, label))).toBe(true)
            const failure = Option.getOrThrow(result.outcome)
            expect(failure._tag === "Left" && failure.left._tag === "ServiceUnavailable" && failure.left.reason)
              .toContain("acknowledged by 0 of 1 replica(s)")
          }
          // Read-only calls wait for no replica. The failed calls may have spent their units (their writes
          // are on the primaries, unacknowledged): the count errs on the side of admitting less.
          for (const key of keys) {
            const decision = yield* answersWithin(TIMEOUT_MS, `peek ${key}`, limiter.peek("window", key))
            expect(decision.allowed).toBe(true)
            expect(decision.remaining).toBeLessThanOrEqual(19)
          }
        })),
      60_000
    )
  }
)

/** A connection to the replica on `port` that may read (READONLY), closed with the scope. */
const replicaReader = (port: number) =>
  Effect.tap(
    connected(() => new Redis({ host: "127.0.0.1", port, lazyConnect: true })),
    (client) => Effect.promise(async () => expect(await client.call("READONLY")).toBe("OK"))
  )
