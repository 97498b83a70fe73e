/**
 * What the Redis door adds beyond the shared conformance suite: Effect's clock (driven by `TestClock`),
 * leases that live in Redis (released and renewed through another instance, reclaimed when expired),
 * the key scheme, `checkMany` as one pipeline, an adopted client left open, `layerConfig` and
 * `layerFile`, and the door as a store under the one front (policies validated on entry, calls checked
 * policy → key → amount before Redis is touched, `admit` keeping its lease alive by default).
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, layer, vi } from "@effect/vitest"
import { Config, ConfigError, Context, Effect, Layer, Redacted, TestClock, TestServices } from "effect"
import { Redis } from "ioredis"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import type { RateLimiterError } from "../../src/Errors.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { safeOptions } from "../../src/redis/RedisClient.js"
import { layer as frontLayer, RateLimiter } from "../../src/services/RateLimiter.js"
import { withConfig } from "../support/config.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const HOUR = 3_600_000

const fixedConcurrency = (limit: number) => ({
  algorithm: "fixed" as const,
  minLimit: limit,
  maxLimit: limit,
  initialLimit: limit,
  backoffRatio: 0.9,
  smoothing: 0.2,
  tolerance: 2,
  rttWindow: 10
})

const policies = (ns: string): ReadonlyArray<Policy> => [
  {
    kind: "limiter",
    name: "window",
    prefix: `${ns}:window`,
    maxKeys: 1000,
    strategy: { kind: "fixedWindow", limit: 5, windowMs: LONG_WINDOW_MS }
  },
  {
    kind: "meter",
    name: "tokens",
    prefix: `${ns}:tokens`,
    maxKeys: 1000,
    budget: 10,
    windowMs: LONG_WINDOW_MS,
    shared: false
  },
  { kind: "admitter", name: "pool", prefix: `${ns}:pool`, maxKeys: 1000, concurrency: fixedConcurrency(2) },
  {
    kind: "admitter",
    name: "unified",
    prefix: `${ns}:unified`,
    maxKeys: 1000,
    concurrency: fixedConcurrency(5),
    rate: { kind: "gcra", limit: 1, periodMs: HOUR, burst: 2 }
  }
]

const T0 = 1_800_000_000_000

describe("RedisBackend", () => {
  layer(testRedisLayer())((it) => {
    it.scoped("with Effect's clock, an instant of 0 is refused (0 would select the Redis clock)", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const limiter = yield* RedisBackend.make({
          policies: policies(`${env.ns}:zero`),
          redis: env.url,
          clock: "effect"
        })
        const error = yield* Effect.flip(limiter.check("window", "k"))
        expect(error._tag).toBe("InvalidArgument")
        if (error._tag === "InvalidArgument") expect(error.argument).toBe("clock")
        yield* TestClock.setTime(T0)
        const decision = yield* limiter.check("window", "k")
        expect(decision.resetAt).toBe(T0 + LONG_WINDOW_MS - (T0 % LONG_WINDOW_MS))
        // The state is at the wire's key, prefix:key.
        expect(yield* Effect.promise(() => env.client.hmget(`${env.ns}:zero:window:k`, "s", "c"))).toEqual([
          String(T0 - (T0 % LONG_WINDOW_MS)),
          "1"
        ])
      }))

    it.scoped("leases live in Redis: another instance releases and renews them; expired ones are reclaimed", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const shared = policies(`${env.ns}:leases`)
        const a = yield* RedisBackend.make({ policies: shared, redis: env.url, clock: "effect" })
        const b = yield* RedisBackend.make({ policies: shared, redis: env.url, clock: "effect" })
        yield* TestClock.setTime(T0)

        const a1 = yield* a.leases.acquire("pool", "x")
        const a2 = yield* a.leases.acquire("pool", "x")
        expect([a1.held, a2.held, a1.leaseExpiresAt]).toEqual([true, true, T0 + 2000])
        const full = yield* b.leases.acquire("pool", "y")
        expect([full.held, full.bindingAxis, full.decision.limit, full.decision.resetAt]).toEqual([
          false,
          "concurrency",
          2,
          T0
        ])

        // B gives back a lease A took.
        yield* b.leases.release(a1.leaseId, false)
        const b1 = yield* b.leases.acquire("pool", "y")
        expect(b1.held).toBe(true)

        // B renews A's other lease; a1 (released) and an id of no admitter here are reported reclaimed.
        yield* TestClock.adjust(1500)
        const beat = yield* b.leases.heartbeat([a2.leaseId, a1.leaseId, "f".repeat(32)])
        expect(beat).toEqual({ live: [a2.leaseId], reclaimed: [a1.leaseId, "f".repeat(32)], nextDeadline: T0 + 3500 })

        // At T0 + 2500, b1 (taken at T0, never renewed) has expired; a2 (renewed) has not.
        yield* TestClock.adjust(1000)
        const next = yield* a.leases.acquire("pool", "z")
        expect(next.held).toBe(true)
        const after = yield* a.leases.heartbeat([a2.leaseId, b1.leaseId, next.leaseId])
        expect(after.live).toEqual([a2.leaseId, next.leaseId])
        expect(after.reclaimed).toEqual([b1.leaseId])
        // Releasing a reclaimed lease is a no-op.
        yield* b.leases.release(b1.leaseId, true)
        expect((yield* b.leases.acquire("pool", "w")).held).toBe(false)
      }))

    it.scoped("a unified admitter's keys share one hash tag, and a rate denial holds nothing", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:tags`
        const limiter = yield* RedisBackend.make({ policies: policies(ns), redis: env.url, clock: "effect" })
        yield* TestClock.setTime(T0)
        const first = yield* limiter.leases.acquire("unified", "user")
        const second = yield* limiter.leases.acquire("unified", "user")
        const third = yield* limiter.leases.acquire("unified", "user")
        expect([first.held, second.held, third.held, third.bindingAxis]).toEqual([true, true, false, "rate"])
        // Rate remaining (0 after the second) is tighter than concurrency remaining (3), so it is reported.
        expect([second.decision.limit, second.decision.remaining]).toEqual([2, 0])
        const held = yield* Effect.promise(() => env.client.zrange(`{${ns}:unified}#leases`, 0, -1))
        expect(held.slice().sort()).toEqual([first.leaseId, second.leaseId].sort())
        expect(yield* Effect.promise(() => env.client.exists(`{${ns}:unified}:user`))).toBe(1)
        expect(first.leaseId.slice(0, 8)).toBe(second.leaseId.slice(0, 8))
      }))

    it.scoped("checkMany is one script call (two in one pipeline past 128 keys); an adopted client is used as given and left open", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const client = new Redis(env.url, { ...safeOptions, lazyConnect: false })
        yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
        const pipeline = vi.spyOn(client, "pipeline")
        const evalsha = vi.spyOn(client, "evalsha")
        const keys = Array.from({ length: 50 }, (_, i) => `k${i % 10}`)
        const wide = Array.from({ length: 130 }, (_, i) => `wide-${i}`)
        const [decisions, wideDecisions] = yield* Effect.scoped(Effect.gen(function*() {
          const limiter = yield* RedisBackend.make({ policies: policies(`${env.ns}:many`), redis: { client } })
          // Redis's script cache may not hold many.check yet (a first run is sent again by text): warm it.
          yield* limiter.checkMany("window", ["warm-a", "warm-b"])
          pipeline.mockClear()
          evalsha.mockClear()
          const decisions = yield* limiter.checkMany("window", keys)
          // 50 keys: one many.check (50 state keys and their 50 block keys), sent on its own.
          expect(pipeline).not.toHaveBeenCalled()
          expect(evalsha).toHaveBeenCalledTimes(1)
          expect(evalsha.mock.calls[0]![1]).toBe(100)
          evalsha.mockClear()
          // 130 keys: two runs of many.check (128 + 2 keys), in one pipeline.
          const wideDecisions = yield* limiter.checkMany("window", wide)
          expect(pipeline).toHaveBeenCalledTimes(1)
          expect(evalsha).not.toHaveBeenCalled()
          return [decisions, wideDecisions] as const
        }))
        // Each of the 10 keys admits 5 of its 5 occurrences, in input order.
        expect(decisions.filter((d) => d.allowed)).toHaveLength(50)
        expect(decisions.slice(0, 10).map((d) => d.remaining)).toEqual(Array(10).fill(4))
        expect(decisions.slice(40).map((d) => d.remaining)).toEqual(Array(10).fill(0))
        expect(wideDecisions.map((d) => d.remaining)).toEqual(Array(130).fill(4))
        // The layer's scope is closed; the client it was given is still ours and still open.
        expect(client.status).toBe("ready")
        expect(yield* Effect.promise(() => client.ping())).toBe("PONG")
      }))

    it.effect("layerConfig reads its options from Config; a missing value fails with Effect's ConfigError", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const backend = RedisBackend.layerConfig({
          policies: Config.succeed(policies(`${env.ns}:config`)),
          redis: Config.redacted("THROTTLEKIT_REDIS_URL"),
          timeoutMs: Config.integer("THROTTLEKIT_REDIS_TIMEOUT_MS").pipe(Config.withDefault(1000))
        })
        const debitWith = (entries: ReadonlyArray<readonly [string, string]>) =>
          Effect.provide(
            Effect.flatMap(RateLimiter, (limiter) => limiter.debit("tokens", "k", 4)),
            withConfig(backend, entries)
          )
        const debit = yield* debitWith([["THROTTLEKIT_REDIS_URL", env.url]])
        expect([debit.allowed, debit.remaining, debit.limit]).toEqual([true, 6, 10])

        const missing = yield* Effect.flip(debitWith([]))
        expect(ConfigError.isConfigError(missing)).toBe(true)
        // A redacted value's error keeps its path and redacts its message.
        expect(String(missing)).toContain("THROTTLEKIT_REDIS_URL")
        const invalid = yield* Effect.flip(
          debitWith([["THROTTLEKIT_REDIS_URL", env.url], ["THROTTLEKIT_REDIS_TIMEOUT_MS", "soon"]])
        )
        expect(ConfigError.isConfigError(invalid)).toBe(true)
        expect(String(invalid)).toContain("THROTTLEKIT_REDIS_TIMEOUT_MS")
        // Neither failure touched the state: the next debit sees only the first.
        const next = yield* debitWith([["THROTTLEKIT_REDIS_URL", env.url]])
        expect([next.allowed, next.remaining]).toEqual([true, 2])
      }))

    it.effect("layerFile serves the policies of a file, over the given connection", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => mkdtempSync(path.join(tmpdir(), "throttlekit-redis-"))),
          (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
        )
        const file = path.join(dir, "policies.yaml")
        const prefix = `${env.ns}:file:tokens`
        yield* Effect.sync(() =>
          writeFileSync(
            file,
            `limiters:\n  tokens:\n    prefix: ${prefix}\n    tokenBudget: { budget: 10, windowMs: 1h }\n`
          )
        )
        const debit = yield* Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => limiter.debit("tokens", "k", 3)),
          RedisBackend.layerFile(file, { redis: Redacted.make(env.url) })
        )
        expect([debit.allowed, debit.remaining, debit.limit]).toEqual([true, 7, 10])
        expect(yield* Effect.promise(() => env.client.exists(`${prefix}:k`))).toBe(1)

        const missing = yield* Effect.flip(Effect.scoped(Layer.build(
          RedisBackend.layerFile(path.join(dir, "nope.yaml"), { redis: env.url }).pipe(
            Layer.provide(NodeFileSystem.layer)
          )
        )))
        expect(missing._tag).toBe("PolicyError")
      }).pipe(Effect.scoped))

    it.effect("policies written in code are validated: a bad one fails the layer with PolicyError", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:invalid`
        const [window, ...rest] = policies(ns)
        const zero: Policy = {
          kind: "limiter",
          name: "window",
          prefix: `${ns}:window`,
          maxKeys: 1000,
          strategy: { kind: "fixedWindow", limit: 0, windowMs: HOUR }
        }
        const build = (list: ReadonlyArray<Policy>) =>
          Effect.flip(Effect.scoped(Layer.build(RedisBackend.layer({ policies: list, redis: env.url }))))
        const bad = yield* build([zero, ...rest])
        expect(bad._tag).toBe("PolicyError")
        if (bad._tag === "PolicyError") expect(bad.path).toBe("limiters.window.strategy.limit")
        const twice = yield* build([window!, window!])
        expect(twice._tag).toBe("PolicyError")
        if (twice._tag === "PolicyError") {
          expect([twice.path, twice.reason]).toEqual(["limiters.window", "duplicate policy name"])
        }
      }))

    it.scoped("over layerStore, calls are checked policy, then key, then amount, and a refused one changes nothing", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = `${env.ns}:order`
        const context = yield* Layer.build(
          frontLayer().pipe(Layer.provide(RedisBackend.layerStore({ policies: policies(ns), redis: env.url })))
        )
        const limiter = Context.get(context, RateLimiter)
        const calls: ReadonlyArray<Effect.Effect<unknown, RateLimiterError>> = [
          limiter.check("nope", "", 0),
          limiter.check("tokens", "", 0),
          limiter.check("window", "", 0),
          limiter.check("window", "k", 0),
          limiter.checkMany("window", ["k", ""], 0),
          limiter.debit("tokens", "k", -1),
          Effect.scoped(limiter.admit("pool", "", { cost: 0 })),
          Effect.scoped(limiter.admit("unified", "k", { cost: 1.5 }))
        ]
        const faults = yield* Effect.forEach(calls, Effect.flip)
        expect(faults.map((e) => [e._tag, e._tag === "InvalidArgument" ? e.argument : ""])).toEqual([
          ["PolicyNotFound", ""],
          ["OperationNotSupported", ""],
          ["InvalidArgument", "key"],
          ["InvalidArgument", "cost"],
          ["InvalidArgument", "keys[1]"],
          ["InvalidArgument", "tokens"],
          ["InvalidArgument", "key"],
          ["InvalidArgument", "cost"]
        ])
        // Nothing reached Redis: no key under the namespace exists.
        expect(yield* Effect.promise(() => env.client.keys(`*${ns}*`))).toEqual([])
        expect((yield* limiter.check("window", "k")).remaining).toBe(4)
      }))

    // On the live clock: the keeper's heartbeat fiber and the lease TTL in Redis both run in real time.
    it.scoped("admit keeps its lease alive past the TTL by default; keepAlive: false leaves it to the TTL", () =>
      TestServices.provideLive(Effect.gen(function*() {
        const env = yield* TestRedis
        const ttlMs = 600
        const limiter = yield* RedisBackend.make({
          policies: policies(`${env.ns}:keep`),
          redis: env.url,
          leaseTtlMs: ttlMs
        })
        yield* Effect.scoped(Effect.gen(function*() {
          const kept = yield* limiter.admit("pool", "a")
          const lapsing = yield* limiter.admit("pool", "b", { keepAlive: false })
          expect([kept.held, lapsing.held]).toEqual([true, true])
          yield* Effect.sleep(ttlMs * 2.5)
          const beat = yield* limiter.leases.heartbeat([kept.leaseId, lapsing.leaseId])
          expect([beat.live, beat.reclaimed]).toEqual([[kept.leaseId], [lapsing.leaseId]])
          expect(kept.reclaimed).toBe(false)
        }))
        // The scope closed: the kept lease went back (the other had lapsed), so both slots are free.
        const again = yield* Effect.scoped(Effect.forEach([1, 2], () => limiter.admit("pool", "c")))
        expect(again.map((a) => a.held)).toEqual([true, true])
      })))
  })
})
