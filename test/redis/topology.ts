/**
 * Helpers of the Redis Cluster and Sentinel tests of the Redis door: bounded, timed calls (an outage
 * must end a call with `ServiceUnavailable` within the bound, never hang it), keys placed on every
 * primary of a cluster, and frozen replicas that are always thawed.
 */
import { expect } from "@effect/vitest"
import { Duration, Effect, type Either, Option, type Scope } from "effect"
import type { Cluster, Redis } from "ioredis"
import type { RateLimiterError } from "../../src/Errors.js"
import type { Policy } from "../../src/Policy.js"
import { type ClusterPrimary, keyInSlots, type RedisClusterHandle } from "../support/redisCluster.js"

export const HOUR = 3_600_000

/** What a bounded call may take beyond its bound on a busy two-CPU machine (timers, event loop, GC). */
export const SLACK_MS = 500

/** A fixed concurrency ceiling of `limit`, as admitter policies take it. */
export const fixedConcurrency = (limit: number) => ({
  algorithm: "fixed" as const,
  minLimit: limit,
  maxLimit: limit,
  initialLimit: limit,
  backoffRatio: 0.9,
  smoothing: 0.2,
  tolerance: 2,
  rttWindow: 10
})

/**
 * A fixed-window limiter of `limit` per 30 days: the failover tests count what was applied across seconds
 * of failover, and a window of an hour would roll over mid-test at the top of the hour (windows start at
 * multiples of their length).
 */
export const windowLimiter = (name: string, prefix: string, limit: number): Policy => ({
  kind: "limiter",
  name,
  prefix,
  maxKeys: 10_000,
  strategy: { kind: "fixedWindow", limit, windowMs: 30 * 86_400_000 }
})

/** A concurrency admitter with a fixed ceiling. */
export const poolAdmitter = (name: string, prefix: string, ceiling: number): Policy => ({
  kind: "admitter",
  name,
  prefix,
  maxKeys: 10_000,
  concurrency: fixedConcurrency(ceiling)
})

/** The client `make` builds (lazily connecting), connected, its errors silenced; disconnected with the scope. */
export const connected = <C extends Redis | Cluster>(make: () => C): Effect.Effect<C, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = make()
      client.on("error", () => {})
      await client.connect()
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

/** One call, timed: its outcome, or `None` when it had not ended after the hang cap. */
export interface Timed<A> {
  readonly ms: number
  readonly outcome: Option.Option<Either.Either<A, RateLimiterError>>
}

/** Runs `call` and times it (on the real clock); a call still running after `capMs` is cut off as a hang. */
export const timed = <A, R>(
  call: Effect.Effect<A, RateLimiterError, R>,
  capMs = 10_000
): Effect.Effect<Timed<A>, never, R> =>
  Effect.map(
    Effect.timed(Effect.timeoutOption(Effect.either(call), Duration.millis(capMs))),
    ([elapsed, outcome]) => ({ ms: Duration.toMillis(elapsed), outcome })
  )

/** The call ended within `boundMs` (plus slack), and if it failed, with `ServiceUnavailable`; its value, if any. */
export const expectBounded = <A>(call: Timed<A>, boundMs: number, label: string): Option.Option<A> => {
  expect(Option.isSome(call.outcome), `${label}: hung`).toBe(true)
  expect(call.ms, `${label}: took ${Math.round(call.ms)} ms`).toBeLessThanOrEqual(boundMs + SLACK_MS)
  const outcome = Option.getOrThrow(call.outcome)
  if (outcome._tag === "Left") {
    expect(outcome.left._tag, `${label}: ${JSON.stringify(outcome.left)}`).toBe("ServiceUnavailable")
    return Option.none()
  }
  return Option.some(outcome.right)
}

/** The call answered (within `boundMs` plus slack); its value. */
export const expectAnswered = <A>(call: Timed<A>, boundMs: number, label: string): A => {
  const value = expectBounded(call, boundMs, label)
  expect(Option.isSome(value), `${label}: failed`).toBe(true)
  return Option.getOrThrow(value)
}

/** Runs `call`, which must answer within `boundMs` (plus slack); its value. */
export const answersWithin = <A, R>(
  boundMs: number,
  label: string,
  call: Effect.Effect<A, RateLimiterError, R>
): Effect.Effect<A, never, R> => Effect.map(timed(call), (result) => expectAnswered(result, boundMs, label))

/** A key suffix per primary: `keyPrefix + suffix` (the key as stored) hashes into that primary's slots. */
export const keysOnEveryPrimary = (
  primaries: ReadonlyArray<ClusterPrimary>,
  keyPrefix: string,
  label: string
): Array<string> =>
  primaries.map((primary) => keyInSlots(`${keyPrefix}${label}`, primary.slots).slice(keyPrefix.length))

/** The current primaries of `cluster`. */
export const primariesOf = (cluster: RedisClusterHandle) => Effect.promise(() => cluster.primaries())

/**
 * Freezes (SIGSTOP) every replica of `cluster` for the rest of the scope; when it closes they are thawed
 * and the cluster is awaited whole again (replicas back in sync), whatever the test did.
 */
export const pauseReplicas = (
  cluster: RedisClusterHandle
): Effect.Effect<ReadonlyArray<number>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.map(primariesOf(cluster), (primaries) => {
      const replicas = primaries.flatMap((primary) => primary.replicas)
      for (const port of replicas) cluster.node(port).pause()
      return replicas
    }),
    (replicas) =>
      Effect.promise(async () => {
        for (const port of replicas) cluster.node(port).resume()
        await cluster.awaitReady(30_000)
      })
  )
