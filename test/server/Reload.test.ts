/**
 * The server's live reload in process (`ThrottleKitServer.layer`'s `ServerReload`), through real gRPC on
 * loopback: what survives a reload beyond the store (two-tier credits, the Monitor's view, the Fleet door),
 * what is refused, and how a reload is summarized.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as AdminBackend from "../../src/clients/AdminBackend.js"
import { sameDefinition } from "../../src/internal/sameDefinition.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import { PolicySet } from "../../src/PolicySet.js"
import { MonitorHub } from "../../src/server/monitor/Hub.js"
import { appliedLine, refusedLine, summarize } from "../../src/server/Reload.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { RateLimiterAdmin } from "../../src/services/RateLimiterAdmin.js"
import { redisServer } from "../support/redisServer.js"

const policiesOf = (config: string) => PolicyFile.parse(config, "test.yaml")

/** A leased two-tier policy on a token bucket (leases from the store below, `batch` units at a time). */
const leased = "  leased:\n    strategy: tokenBucket\n    capacity: 20\n    refillPerSec: 0.001\n" +
  "    twoTier:\n      batch: 5\n"
const plain = "  api:\n    strategy: gcra\n    limit: 3\n    period: 1h\n    burst: 3\n"
const other = "  other:\n    strategy: gcra\n    limit: 7\n    period: 1h\n    burst: 7\n"

/** The server on a free loopback port with `config`, and a call through a gRPC client. */
const running = (config: string | PolicySet, store?: ThrottleKitServer.ServerStore) =>
  Effect.gen(function*() {
    const policies = typeof config === "string" ? yield* policiesOf(config) : config
    const context = yield* Layer.build(
      ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, ...(store === undefined ? {} : { store }) })
    )
    const server = Context.get(context, ThrottleKitServer.GrpcServer)
    const call = <A, E>(program: Effect.Effect<A, E, RateLimiter>) =>
      Effect.provide(program, ServiceBackend.layer({ target: server.address, deadline: "5 seconds" }))
    return {
      call,
      hub: Context.get(context, MonitorHub),
      reloader: Context.get(context, ThrottleKitServer.ServerReload),
      server
    }
  })

const check = (policy: string, key: string) => Effect.flatMap(RateLimiter, (limiter) => limiter.check(policy, key))

describe("live reload (in process)", () => {
  it("compares definitions deeply: field order and undefined fields do not count", () => {
    expect(sameDefinition({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).toBe(true)
    expect(sameDefinition({ a: 1, b: undefined }, { a: 1 })).toBe(true)
    expect(sameDefinition({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] } })).toBe(false)
    expect(sameDefinition({ a: 1 }, { a: 1, b: 0 })).toBe(false)
    expect(sameDefinition([1], { 0: 1 })).toBe(false)
  })

  it.effect("summarizes a reload in one line, and a refusal in one line", () =>
    Effect.gen(function*() {
      const before = yield* policiesOf(`limiters:\n${plain}${other}`)
      const after = yield* policiesOf(`limiters:\n${other}${leased}`)
      const summary = summarize(before, after)
      expect(summary).toEqual({ changed: [], added: ["leased"], removed: ["api"], unchanged: ["other"] })
      expect(appliedLine("p.yaml", summary, after.size)).toBe(
        "throttlekit-effect reloaded p.yaml: 2 policies (1 added: leased; 1 removed: api; 1 unchanged)"
      )
      expect(refusedLine("p.yaml", "bad\n  field")).toBe(
        "throttlekit-effect reload of p.yaml refused, nothing changed: bad field"
      )
    }))

  it.scoped("an unchanged leased two-tier policy keeps its local credits; a changed one leases afresh", () =>
    Effect.gen(function*() {
      const { call, reloader } = yield* running(`limiters:\n${leased}${plain}`)
      const first = yield* call(Effect.forEach([1, 2], () => check("leased", "k")))
      // One lease of 5 units: 4 then 3 left locally.
      expect(first.map((d) => d.remaining)).toEqual([4, 3])

      // `api` changes; `leased` does not: its key keeps spending the credits it holds.
      const summary = yield* reloader.reload(yield* policiesOf(`limiters:\n${leased}${plain.replace("3", "4")}`))
      expect(summary).toEqual({ changed: ["api"], added: [], removed: [], unchanged: ["leased"] })
      expect((yield* call(check("leased", "k"))).remaining).toBe(2)

      // Now `leased` changes (batch 4): its keys start from a fresh lease of the new batch.
      yield* reloader.reload(yield* policiesOf(`limiters:\n${leased.replace("batch: 5", "batch: 4")}${plain}`))
      expect((yield* call(check("leased", "k"))).remaining).toBe(3)
    }))

  it.scoped("the Monitor follows: added policies are tracked, removed ones leave the snapshot, unchanged keep counts", () =>
    Effect.gen(function*() {
      const { call, hub, reloader } = yield* running(`limiters:\n${plain}${other}`)
      yield* call(Effect.forEach([1, 2], () => check("other", "k")))
      yield* reloader.reload(yield* policiesOf(`limiters:\n${other}${leased}`))
      yield* call(check("leased", "k"))
      const snapshot = yield* hub.snapshot
      const byName = new Map(snapshot.policies.map((p) => [p.name, p]))
      expect([...byName.keys()]).toEqual(["other", "leased"])
      expect(byName.get("other")?.allowedTotal).toBe(2)
      expect(byName.get("leased")?.allowedTotal).toBe(1)
    }))

  it.scoped("a policy the server cannot add without a restart is refused, and nothing changes", () =>
    Effect.gen(function*() {
      const { call, reloader } = yield* running(`limiters:\n${plain}`)
      yield* call(Effect.forEach([1, 2, 3], () => check("api", "k")))
      const federated = "  global:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 1000\n" +
        "    federated:\n      batch: 2\n"
      const refused = yield* Effect.either(reloader.reload(yield* policiesOf(`limiters:\n${federated}`)))
      expect(Either.isLeft(refused) && refused.left.message).toContain("needs the Fleet door")
      expect(reloader.policies().names).toEqual(["api"])
      const denied = yield* call(check("api", "k"))
      expect([denied.allowed, denied.remaining]).toEqual([false, 0])
      const unknown = yield* Effect.either(call(check("global", "k")))
      expect(Either.isLeft(unknown) && unknown.left._tag).toBe("PolicyNotFound")
    }))

  const fair: Policy = {
    kind: "fair",
    name: "fair",
    prefix: "fair",
    maxKeys: 100,
    fairEscrow: { limit: 3, windowMs: 3_600_000, weights: {} }
  }
  const gcraPolicy = (limit: number): Policy => ({
    kind: "limiter",
    name: "api",
    prefix: "api",
    maxKeys: 100,
    strategy: { kind: "gcra", limit, periodMs: 3_600_000, burst: limit }
  })

  /** A fair-escrow tenant drained to a denial stays denied across a reload that leaves the policy as it is. */
  const fairKept = (store?: ThrottleKitServer.ServerStore) =>
    Effect.gen(function*() {
      const { call, reloader } = yield* running(yield* PolicySet.make([fair, gcraPolicy(3)]), store)
      const tenant = `t-${Math.random().toString(36).slice(2)}`
      const drained = yield* call(Effect.forEach([1, 2, 3, 4], () => check("fair", tenant)))
      expect(drained.map((d) => d.allowed)).toEqual([true, true, true, false])
      yield* reloader.reload(yield* PolicySet.make([fair, gcraPolicy(4)]))
      expect((yield* call(check("fair", tenant))).allowed).toBe(false)
      // Changed, it starts afresh.
      yield* reloader.reload(yield* PolicySet.make([{ ...fair, fairEscrow: { ...fair.fairEscrow, limit: 5 } }]))
      expect((yield* call(check("fair", tenant))).allowed).toBe(true)
    })

  it.scoped("memory: an unchanged fair-escrow policy keeps its tenants", () => fairKept())

  it.scoped(
    "redis: an unchanged fair-escrow policy keeps its tenants (they live in the process)",
    () => Effect.flatMap(redisServer, (redis) => fairKept({ kind: "redis", redis: redis.url })),
    { timeout: 60_000 }
  )

  it.scoped("the admin door follows: it resets a key of an added policy and refuses a removed one", () =>
    Effect.gen(function*() {
      const { call, reloader, server } = yield* running(`limiters:\n${plain}`)
      yield* reloader.reload(yield* policiesOf(`limiters:\n${other}`))
      yield* call(Effect.forEach([1, 2], () => check("other", "k")))
      const admin = Context.get(
        yield* Layer.build(AdminBackend.layer({ target: server.address })),
        RateLimiterAdmin
      )
      yield* admin.reset("other", "k")
      expect((yield* call(check("other", "k"))).remaining).toBe(6)
      const removed = yield* Effect.either(admin.reset("api", "k"))
      expect(Either.isLeft(removed) && removed.left._tag).toBe("PolicyNotFound")
    }))
})
