/**
 * `serve --fail open|closed`: while the store is down, Check and CheckMany on limiter policies answer a
 * synthesized decision; every other call and every other error is unchanged. First the wrapper over a
 * stand-in store whose faults are chosen per call (and the log throttle under `TestClock`), then the real
 * thing: the CLI in its own process on a private redis-server that is killed and started again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schedule, TestClock } from "effect"
import { randomUUID } from "node:crypto"
import { Decision } from "../../src/Decision.js"
import type { RateLimiterError } from "../../src/Errors.js"
import {
  BackendError,
  InvalidArgument,
  OperationNotSupported,
  PolicyNotFound,
  ServiceUnavailable
} from "../../src/Errors.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import type { PolicySet } from "../../src/PolicySet.js"
import * as FailMode from "../../src/server/FailMode.js"
import * as Front from "../../src/services/RateLimiter.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import type { LocalStore } from "../../src/services/RateLimiterStore.js"
import { warnings } from "../support/logs.js"
import { redisServer } from "../support/redisServer.js"
import { runToEnd, startServer, tempFile } from "./cliProcess.js"

const policyText = `
limiters:
  api:
    strategy: gcra
    limit: 5
    period: 1h
    burst: 5
  bucket:
    strategy: tokenBucket
    capacity: 7
    refillPerSec: 1
  tokens:
    tokenBudget:
      budget: 100
      windowMs: 1h
`

const outage = new ServiceUnavailable({ service: "redis", reason: "connection closed" })
const real = new Decision({ allowed: true, limit: 5, remaining: 4, resetAt: 1234, retryAfterMs: 0 })
const unused = Effect.dieMessage("not used by this test")

/**
 * A store serving `policies` whose check/checkMany/peek/debit answer `fault(policy)` when given, else a
 * real-looking decision.
 */
const store = (
  policies: PolicySet,
  fault: (policy: string) => RateLimiterError | undefined
): LocalStore => {
  const answer = <A>(policy: string, value: A): Effect.Effect<A, RateLimiterError> => {
    const error = fault(policy)
    return error === undefined ? Effect.succeed(value) : Effect.fail(error)
  }
  return {
    _tag: "Local",
    backend: "stand-in",
    policies,
    limiter: (policy) => ({
      check: () => answer(policy.name, real),
      checkMany: (keys) => answer(policy.name, keys.map(() => real)),
      peek: () => answer(policy.name, real),
      forecast: () => unused
    }),
    meter: (policy) => ({
      debit: () => answer(policy.name, real),
      peek: () => answer(policy.name, real),
      forecast: () => unused
    }),
    admitter: () => ({ acquire: () => unused }),
    fair: (policy) => ({ check: () => answer(policy.name, real) }),
    leases: { ttlMs: 2000, release: () => unused, heartbeat: () => unused }
  }
}

/** The front over the fail mode over the stand-in store (the server's order). */
const wrapped = (mode: FailMode.FailMode, fault: (policy: string) => RateLimiterError | undefined) =>
  PolicyFile.parse(policyText).pipe(
    Effect.flatMap((policies) => FailMode.make(store(policies, fault), { mode })),
    Effect.flatMap((failMode) => Front.make(failMode))
  )

const plain = (decision: Decision) => ({ ...decision })

describe("FailMode.make (over a stand-in store, under the front)", () => {
  it.scoped("open: a store outage on a limiter check is an allowed decision with remaining = limit", () =>
    Effect.gen(function*() {
      const limiter = yield* wrapped("open", () => outage)
      const synthesized = { allowed: true, limit: 5, remaining: 5, resetAt: 0, retryAfterMs: 0 }
      expect(plain(yield* limiter.check("api", "k"))).toEqual(synthesized)
      expect((yield* limiter.checkMany("api", ["a", "b", "c"])).map(plain)).toEqual([
        synthesized,
        synthesized,
        synthesized
      ])
      // The limit is the strategy's reported one (a token bucket reports its capacity).
      expect(plain(yield* limiter.check("bucket", "k"))).toEqual({ ...synthesized, limit: 7, remaining: 7 })
    }))

  it.scoped("closed: the same outage is a denial with remaining 0 and no retry hint", () =>
    Effect.gen(function*() {
      const limiter = yield* wrapped("closed", () => outage)
      const denied = { allowed: false, limit: 5, remaining: 0, resetAt: 0, retryAfterMs: 0 }
      expect(plain(yield* limiter.check("api", "k"))).toEqual(denied)
      expect((yield* limiter.checkMany("api", ["a", "b"])).map(plain)).toEqual([denied, denied])
    }))

  it.scoped("a healthy store's decisions pass through untouched", () =>
    Effect.gen(function*() {
      const limiter = yield* wrapped("closed", () => undefined)
      expect(yield* limiter.check("api", "k")).toBe(real)
      expect(yield* limiter.checkMany("api", ["a"])).toEqual([real])
    }))

  it.scoped("other errors, other operations and non-limiter policies keep their error", () =>
    Effect.gen(function*() {
      const notFound = new PolicyNotFound({ policy: "nope", configured: ["api"] })
      const unsupported = new OperationNotSupported({ policy: "tokens", operation: "check" })
      const invalid = new InvalidArgument({ argument: "cost", reason: "must be positive" })
      const broken = new BackendError({ backend: "redis", code: "SCRIPT", detail: "bad reply" })
      for (const error of [notFound, unsupported, invalid, broken]) {
        const limiter = yield* wrapped("open", () => error)
        expect(yield* Effect.either(limiter.check("api", "k"))).toEqual(Either.left(error))
        expect(yield* Effect.either(limiter.checkMany("api", ["k"]))).toEqual(Either.left(error))
      }
      const down = yield* wrapped("open", () => outage)
      expect(yield* Effect.either(down.debit("tokens", "k"))).toEqual(Either.left(outage))
      expect(yield* Effect.either(down.peek("api", "k"))).toEqual(Either.left(outage))
      // A check on a meter, or on an unknown policy, is refused by the front: the store is never asked.
      expect(yield* Effect.flip(down.check("tokens", "k"))).toMatchObject({
        _tag: "OperationNotSupported",
        policy: "tokens",
        operation: "check"
      })
      expect(yield* Effect.flip(down.check("nope", "k"))).toMatchObject({ _tag: "PolicyNotFound", policy: "nope" })
      // Bad input too, before the outage could be answered.
      expect(yield* Effect.flip(down.check("api", "k", 0))).toMatchObject({ _tag: "InvalidArgument", argument: "cost" })
    }))

  it.scoped("the outage is logged at most once a second, counting what it stood for", () =>
    Effect.gen(function*() {
      const limiter = yield* wrapped("open", () => outage)
      const [, first] = yield* warnings(Effect.repeatN(limiter.check("api", "k"), 4))
      expect(first).toHaveLength(1)
      expect(first[0]).toContain("store outage: check on policy \"api\" answered fail-open (allowed)")
      expect(first[0]).toContain("redis unavailable: connection closed")
      yield* TestClock.adjust("999 millis")
      const [, second] = yield* warnings(limiter.checkMany("api", ["a"]))
      expect(second).toEqual([])
      yield* TestClock.adjust("1 millis")
      const [, third] = yield* warnings(limiter.checkMany("api", ["a"]))
      expect(third).toHaveLength(1)
      expect(third[0]).toContain("checkMany on policy \"api\"")
      expect(third[0]).toContain("(and 5 more outage answers since the last line)")
    }))
})

describe("serve --fail (the CLI in its own process, on a private redis-server)", () => {
  const policyFile = tempFile("policies.yaml", policyText)
  const fresh = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

  it.live(
    "a Redis outage: open allows, closed denies, other calls keep their status; after a restart decisions are real",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const args = (mode: string) => [
          "--config",
          policyFile,
          "--port",
          "0",
          "--store",
          "redis",
          "--redis",
          redis.url,
          "--fail",
          mode
        ]
        const [open, closed] = yield* Effect.all([startServer(args("open")), startServer(args("closed"))], {
          concurrency: 2
        })
        expect(open.startupLine).toContain("[store=redis, insecure, lease-ttl=2000ms, fail=open]")
        expect(closed.startupLine).toContain("[store=redis, insecure, lease-ttl=2000ms, fail=closed]")
        // The server's Redis timeout is 1 s; give the client more so an outage is the server's answer.
        const via = <A, E>(server: typeof open, program: Effect.Effect<A, E, RateLimiter>) =>
          Effect.provide(program, ServiceBackend.layer({ target: server.address, deadline: "5 seconds" }))
        const check = (policy: string, key: string) => Effect.flatMap(RateLimiter, (l) => l.check(policy, key))
        const checkMany = (keys: ReadonlyArray<string>) => Effect.flatMap(RateLimiter, (l) => l.checkMany("api", keys))

        // Healthy: real decisions, shared through Redis.
        const key = fresh("k")
        const before = yield* via(open, check("api", key))
        expect([before.allowed, before.remaining]).toEqual([true, 4])
        expect(before.resetAt).toBeGreaterThan(0)
        expect((yield* via(closed, check("api", key))).remaining).toBe(3)

        yield* Effect.promise(() => redis.stop())

        const allowed = { allowed: true, limit: 5, remaining: 5, resetAt: 0, retryAfterMs: 0 }
        const denied = { allowed: false, limit: 5, remaining: 0, resetAt: 0, retryAfterMs: 0 }
        expect(plain(yield* via(open, check("api", key)))).toEqual(allowed)
        expect((yield* via(open, checkMany([key, "other"]))).map(plain)).toEqual([allowed, allowed])
        expect(plain(yield* via(closed, check("api", key)))).toEqual(denied)
        expect((yield* via(closed, checkMany([key, "other"]))).map(plain)).toEqual([denied, denied])

        for (const server of [open, closed]) {
          const debit = yield* via(server, Effect.either(Effect.flatMap(RateLimiter, (l) => l.debit("tokens", key))))
          expect(Either.isLeft(debit) && debit.left._tag).toBe("ServiceUnavailable")
          const unknown = yield* via(server, Effect.either(check("nope", key)))
          expect(Either.isLeft(unknown) && unknown.left._tag).toBe("PolicyNotFound")
          const meterCheck = yield* via(server, Effect.either(check("tokens", key)))
          expect(Either.isLeft(meterCheck) && meterCheck.left._tag).toBe("OperationNotSupported")
        }

        const logged = (server: typeof open) => {
          const { stderr, stdout } = server.output()
          return `${stdout}\n${stderr}`.split("\n").filter((line) => line.includes("store outage"))
        }
        expect(logged(open).length).toBeGreaterThanOrEqual(1)
        expect(logged(open)[0]).toContain("answered fail-open (allowed)")
        expect(logged(closed)[0]).toContain("answered fail-closed (denied)")

        // Redis is back (empty: persistence is off): once the client has reconnected, decisions are real.
        yield* Effect.promise(() => redis.start())
        const realAgain = (server: typeof open, label: string) => {
          const again = fresh(label)
          return via(server, check("api", again)).pipe(
            Effect.filterOrFail((d) => d.resetAt !== 0, () => "still synthesized"),
            Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(100)))
          )
        }
        const afterOpen = yield* realAgain(open, "after-open")
        expect([afterOpen.allowed, afterOpen.limit, afterOpen.remaining]).toEqual([true, 5, 4])
        const afterClosed = yield* realAgain(closed, "after-closed")
        expect([afterClosed.allowed, afterClosed.limit, afterClosed.remaining]).toEqual([true, 5, 4])
      })),
    { timeout: 180_000 }
  )

  it.live("a bad --fail value exits 1 with a one-line reason", () =>
    Effect.gen(function*() {
      const ended = yield* runToEnd("npx", [
        "tsx",
        "src/server/bin.ts",
        "serve",
        "--config",
        policyFile,
        "--fail",
        "ajar"
      ])
      expect(ended.code).toBe(1)
      expect(ended.stdout).toBe("")
      expect(ended.stderr.trimEnd().split("\n")).toEqual([
        "throttlekit-effect: --fail must be open or closed"
      ])
    }), { timeout: 120_000 })
})
