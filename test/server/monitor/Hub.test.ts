/**
 * The Monitor hub and tap over the Memory door (TestClock): rolling allowed/denied counts, the latency
 * ring and its nearest-rank percentiles, bounded top keys, the ring of recent denials, guards' inflight
 * through scoped admissions and the lease operations, and the Watch stream: filtered by policy, capped
 * at 500 events per second per stream and 5000 for all of them (shared evenly, the rest counted as
 * dropped), and a reader that does not read loses old events instead of blocking or holding memory.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Deferred, Effect, Exit, Fiber, Layer, Scope, Stream, TestClock } from "effect"
import type { DecisionData } from "../../../src/Decision.js"
import * as MemoryBackend from "../../../src/layers/MemoryBackend.js"
import * as PolicyFile from "../../../src/PolicyFile.js"
import * as Hub from "../../../src/server/monitor/Hub.js"
import * as Tap from "../../../src/server/monitor/Tap.js"
import * as WatchFeed from "../../../src/server/monitor/WatchFeed.js"
import * as Front from "../../../src/services/RateLimiter.js"

const config = `
limiters:
  api:
    strategy: fixedWindow
    limit: 2
    windowMs: 1000
  other:
    strategy: gcra
    limit: 5
    period: 1s
  tokens:
    tokenBudget:
      budget: 10
      windowMs: 1000
  pool:
    concurrency:
      minLimit: 2
      maxLimit: 2
`

const deny: DecisionData = { allowed: false, limit: 2, remaining: 0, resetAt: 1000, retryAfterMs: 7 }
const allow: DecisionData = { allowed: true, limit: 2, remaining: 1, resetAt: 1000, retryAfterMs: 0 }

/** Waits until `n` Watch streams are subscribed (they subscribe when their fiber first runs). */
const subscribed = (hub: Hub.Hub, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000 && hub.watchers() < n; i++) yield* Effect.yieldNow()
    expect(hub.watchers()).toBe(n)
  })

const hubWith = Effect.flatMap(PolicyFile.parse(config, "test"), (policies) => Hub.make({ policies, nodeId: "n1" }))

/** The front over the tap over the Memory store, and the hub it feeds. */
const tapped = Effect.gen(function*() {
  const policies = yield* PolicyFile.parse(config, "test")
  const hub = yield* Hub.make({ policies })
  const context = yield* Layer.build(
    Front.layer().pipe(
      Layer.provide(Tap.layer),
      Layer.provide(MemoryBackend.layerStore({ policies })),
      Layer.provide(Layer.succeed(Hub.MonitorHub, hub))
    )
  )
  return { hub, limiter: Context.get(context, Front.RateLimiter) }
})

describe("Monitor hub", () => {
  it.scoped("counts allowed and denied over a rolling minute, with totals and the latest limit", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      yield* TestClock.setTime(1_000_000)
      for (let i = 0; i < 3; i++) yield* hub.recordDecision("api", "k", allow, 1, "")
      yield* TestClock.adjust(30_000)
      for (let i = 0; i < 2; i++) yield* hub.recordDecision("api", "k", deny, 1, "")
      let api = (yield* hub.snapshot).policies.find((p) => p.name === "api")!
      expect(api).toMatchObject({ kind: "limiter", strategy: "fixedWindow", allowed: 3, denied: 2, limit: 2 })
      yield* TestClock.adjust(31_000)
      api = (yield* hub.snapshot).policies.find((p) => p.name === "api")!
      expect(api).toMatchObject({ allowed: 0, denied: 2, allowedTotal: 3, deniedTotal: 2, deniedByAxis: { "": 2 } })
      yield* TestClock.adjust(60_000)
      api = (yield* hub.snapshot).policies.find((p) => p.name === "api")!
      expect([api.allowed, api.denied]).toEqual([0, 0])
    }))

  it.scoped("keeps the last 256 latencies; p50 and p99 by nearest rank", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      // 300 samples: 1..300 ms; the ring keeps 45..300.
      for (let ms = 1; ms <= 300; ms++) yield* hub.recordDecision("other", "k", allow, ms, "")
      const { latency } = (yield* hub.snapshot).policies.find((p) => p.name === "other")!
      expect(latency.n).toBe(256)
      expect(latency.maxMs).toBe(300)
      // Nearest rank over 45..300: p50 = the 128th value, p99 = the 254th.
      expect(latency.p50Ms).toBe(45 + 127)
      expect(latency.p99Ms).toBe(45 + 253)
      expect(latency.avgMs).toBeCloseTo((45 + 300) / 2, 9)
      const empty = (yield* hub.snapshot).policies.find((p) => p.name === "api")!.latency
      expect(empty).toEqual({ avgMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, n: 0 })
    }))

  it.scoped("top keys: a heavy key survives a flood of distinct keys; counts are lower bounds", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      for (let i = 0; i < 50; i++) yield* hub.recordDecision("api", "hot", deny, 1, "")
      for (let i = 0; i < 20; i++) yield* hub.recordDecision("api", "warm", allow, 1, "")
      for (let i = 0; i < 5000; i++) yield* hub.recordDecision("api", `flood-${i}`, allow, 1, "")
      const snapshot = yield* hub.snapshot
      const api = snapshot.policies.find((p) => p.name === "api")!
      expect(api.topRequested.length).toBe(10)
      // 50 of 5070 is more than 1/128 of the traffic: always kept, and counted exactly (it came first).
      expect(api.topRequested[0]).toEqual({ key: "hot", count: 50 })
      for (const { count, key } of api.topRequested.slice(1)) {
        expect(count).toBeLessThanOrEqual(key === "warm" ? 20 : 1)
      }
      expect(api.topDenied).toEqual([{ key: "hot", count: 50 }])
      expect(snapshot.policies.map((p) => p.name)).toEqual(["api", "other", "pool"])
      expect(snapshot.meta).toMatchObject({ windowMs: 60_000, mode: "process", nodeId: "n1" })
    }))

  it.scoped("keeps the last 200 denials, oldest first", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      for (let i = 0; i < 250; i++) yield* hub.recordDecision("api", `k${i}`, deny, 1, "")
      const recent = (yield* hub.snapshot).recentDenials
      expect(recent.length).toBe(200)
      expect(recent[0]!.key).toBe("k50")
      expect(recent[199]).toMatchObject({
        key: "k249",
        policy: "api",
        axis: "",
        limit: 2,
        remaining: 0,
        retryAfterMs: 7
      })
    }))

  it.scoped("the tap records checks and admissions; a guard's slots are counted until released", () =>
    Effect.gen(function*() {
      const { hub, limiter } = yield* tapped
      yield* TestClock.setTime(10_000)
      for (let i = 0; i < 4; i++) yield* limiter.check("api", "user")
      yield* limiter.checkMany("api", ["a", "b"])
      yield* limiter.debit("tokens", "t", 3)
      yield* Effect.flip(limiter.check("nope", "k"))
      const scope = yield* Scope.make()
      const first = yield* Scope.extend(limiter.admit("pool", "x"), scope)
      expect(first.held).toBe(true)
      const leased = yield* limiter.leases.acquire("pool", "y")
      expect(leased.held).toBe(true)
      const full = yield* limiter.leases.acquire("pool", "z")
      expect(full.held).toBe(false)
      let snapshot = yield* hub.snapshot
      expect(snapshot.policies.find((p) => p.name === "api")).toMatchObject({ allowed: 4, denied: 2 })
      expect(snapshot.policies.find((p) => p.name === "pool")).toMatchObject({
        kind: "admitter",
        allowed: 2,
        denied: 1,
        deniedByAxis: { concurrency: 1 }
      })
      expect(snapshot.guards).toEqual([{
        name: "pool",
        limit: 2,
        inflight: 2,
        share: 0,
        lGlobal: 0,
        nodes: 0,
        fenced: false
      }])
      expect(snapshot.recentDenials.map((d) => [d.policy, d.axis])).toEqual([
        ["api", ""],
        ["api", ""],
        ["pool", "concurrency"]
      ])
      yield* Scope.close(scope, Effect.void.pipe(Effect.exit, Effect.runSync))
      yield* limiter.leases.release(leased.leaseId, false)
      snapshot = yield* hub.snapshot
      expect(snapshot.guards[0]!.inflight).toBe(0)
    }))

  it.scoped("a scoped admission's slot is counted until its scope closes, however long it is held", () =>
    Effect.gen(function*() {
      const { hub, limiter } = yield* tapped
      yield* TestClock.setTime(10_000)
      const inflight = Effect.map(hub.snapshot, (snapshot) => snapshot.guards[0]!.inflight)
      const scope = yield* Scope.make()
      expect((yield* Scope.extend(limiter.admit("pool", "x"), scope)).held).toBe(true)
      // Three lease TTLs (2 s each): the keeper's renewals keep the slot in the hub as in the store.
      for (let i = 0; i < 12; i++) {
        yield* TestClock.adjust(500)
        expect(yield* inflight).toBe(1)
      }
      yield* Scope.close(scope, Exit.void)
      expect(yield* inflight).toBe(0)
      // A short hold (`keepAlive: false`) ends in the hub when its lease expires in the store.
      const short = yield* Scope.make()
      expect((yield* Scope.extend(limiter.admit("pool", "y", { keepAlive: false }), short)).held).toBe(true)
      expect(yield* inflight).toBe(1)
      yield* TestClock.adjust(2001)
      expect(yield* inflight).toBe(0)
      yield* Scope.close(short, Exit.void)
    }))

  it.scoped("watch follows one policy or all, at most 500 events per second per stream", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      yield* TestClock.setTime(5000)
      const onlyApi = yield* Effect.fork(Stream.runCollect(Stream.take(hub.watch("api"), 3)))
      const all = yield* Effect.fork(Stream.runCollect(Stream.take(hub.watch(), 4)))
      yield* subscribed(hub, 2)
      yield* hub.recordDecision("other", "o1", deny, 1, "")
      yield* hub.recordDecision("api", "a1", allow, 1, "")
      yield* hub.recordDecision("api", "a2", deny, 1, "")
      yield* hub.recordDecision("api", "a3", deny, 1, "")
      yield* hub.recordDecision("api", "a4", deny, 1, "")
      expect(Chunk.toArray(yield* Fiber.join(onlyApi)).map((e) => e.key)).toEqual(["a2", "a3", "a4"])
      expect(Chunk.toArray(yield* Fiber.join(all)).map((e) => e.key)).toEqual(["o1", "a2", "a3", "a4"])
      yield* Effect.yieldNow()
      expect(hub.watchers()).toBe(0)

      // 700 denials within one second, then 10 in the next: the stream passes 500, then the 10.
      const capped = yield* Effect.fork(Stream.runCollect(Stream.take(hub.watch("api"), 510)))
      yield* subscribed(hub, 1)
      yield* TestClock.setTime(7000)
      for (let i = 0; i < 700; i++) {
        yield* hub.recordDecision("api", `burst-${i}`, deny, 1, "")
        if (i % 100 === 99) yield* Effect.yieldNow()
      }
      yield* TestClock.setTime(8000)
      for (let i = 0; i < 10; i++) yield* hub.recordDecision("api", `next-${i}`, deny, 1, "")
      const events = Chunk.toArray(yield* Fiber.join(capped))
      expect(events.filter((e) => e.key.startsWith("burst-")).length).toBe(500)
      expect(events.slice(500).map((e) => e.key)).toEqual(Array.from({ length: 10 }, (_, i) => `next-${i}`))
    }))

  it.scoped("all the streams together send at most 5000 events per second, shared evenly; the rest is counted", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      yield* TestClock.setTime(5000)
      const streams = 20
      const readers = yield* Effect.forEach(
        Array.from({ length: streams }),
        () => Effect.fork(Stream.runCollect(Stream.takeUntil(hub.watch("api"), (event) => event.key === "last"))),
        { concurrency: "unbounded" }
      )
      yield* subscribed(hub, streams)
      // 400 denials within one second: each of the 20 streams may send 5000 / 20 = 250 of them.
      for (let i = 0; i < 400; i++) yield* hub.recordDecision("api", `e${i}`, deny, 1, "")
      yield* TestClock.setTime(6000)
      yield* hub.recordDecision("api", "last", deny, 1, "")
      const perStream = Hub.limits.watchEventsPerSecondPerServer / streams
      for (const reader of readers) {
        const keys = Chunk.toArray(yield* Fiber.join(reader)).map((e) => e.key)
        expect(keys).toEqual([...Array.from({ length: perStream }, (_, i) => `e${i}`), "last"])
      }
      expect(hub.watchDropped()).toBe(streams * (400 - perStream))
    }))

  it.scoped("a reader that does not read loses old events; decisions never wait for it", () =>
    Effect.gen(function*() {
      const hub = yield* hubWith
      yield* TestClock.setTime(5000)
      const gate = yield* Deferred.make<void>()
      const blocked = yield* Deferred.make<void>()
      // This reader blocks on its first event until the gate opens.
      const reader = yield* Effect.fork(
        hub.watch("api").pipe(
          Stream.tap((event) =>
            event.key === "e0"
              ? Effect.zipRight(Deferred.succeed(blocked, undefined), Deferred.await(gate))
              : Effect.void
          ),
          Stream.takeUntil((event) => event.key === "e4999"),
          Stream.runCollect
        )
      )
      yield* subscribed(hub, 1)
      yield* TestClock.adjust(1000)
      yield* hub.recordDecision("api", "e0", deny, 1, "")
      yield* Deferred.await(blocked)
      for (let i = 1; i < 5000; i++) {
        // Spread over seconds so that the rate cap is not what drops them.
        if (i % 400 === 0) yield* TestClock.adjust(1000)
        yield* hub.recordDecision("api", `e${i}`, deny, 1, "")
      }
      yield* Deferred.succeed(gate, undefined)
      const received = Chunk.toArray(yield* Fiber.join(reader)).map((e) => e.key)
      expect(received.length).toBeLessThanOrEqual(Hub.limits.watchBuffer + WatchFeed.DEFAULT_CHUNK_SIZE)
      expect(received[0]).toBe("e0")
      expect(received[received.length - 1]).toBe("e4999")
    }))

  it.scoped("watch streams end when the hub's scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const hub = yield* Scope.extend(hubWith, scope)
      const watcher = yield* Effect.fork(Stream.runCollect(hub.watch()))
      // A policy the hub does not track has no events, and its stream ends with the hub all the same.
      const unknown = yield* Effect.fork(Stream.runCollect(hub.watch("nope")))
      yield* subscribed(hub, 2)
      yield* Scope.close(scope, Effect.runSync(Effect.exit(Effect.void)))
      for (const fiber of [watcher, unknown]) {
        const exit = yield* Fiber.await(fiber)
        expect(exit._tag === "Success" || (exit._tag === "Failure" && exit.cause._tag === "Interrupt")).toBe(true)
      }
      // Recording after the shutdown still never fails.
      yield* hub.recordDecision("api", "late", deny, 1, "")
    }))
})
