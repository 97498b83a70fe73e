/**
 * Watch fan-out against the real server (`ThrottleKitServer.layer` on loopback, memory store): idle Watch
 * streams never tax decisions. 220 Watch calls whose client never reads (plain HTTP/2 streams left
 * paused: their flow-control windows fill and stay full) against a server allowing 200: the 20 over the
 * cap are answered RESOURCE_EXHAUSTED at once, the 200 stay open. Then a flood of denials (CheckMany and
 * Check calls from 16 callers, every one denied, so every decision is a Watch event): every check
 * completes, and the heap (after full collections, client and server together: they share this process)
 * grows by less than the bound below. No timing is asserted.
 *
 * The bound, from the worst case with these numbers (see `WatchFeed.ts`):
 * - the ring: 1024 events, each with its one shared encoded message: ≤ 1024 × ~0.5 KB ≈ 0.5 MB;
 * - per open stream, server side: one chunk in hand (16 events) and grpc-js's buffer (16 messages plus one
 *   frame being sent), events the ring may have let go: ≤ 33 × ~0.5 KB ≈ 17 KB, × 200 ≈ 3.4 MB;
 * - per open stream, client side (in this process too): the paused stream's window of received data,
 *   64 KiB, × 200 = 12.5 MB;
 * about 16.5 MB in all; the test allows 24 MB for the collector's slack. (The flood itself keeps nothing:
 * its calls have completed.)
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Effect, Layer, Scope } from "effect"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { WatchResponseSchema } from "../../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../../src/layers/ServiceBackend.js"
import { DenialEvent } from "../../../src/monitor/Snapshot.js"
import * as PolicyFile from "../../../src/PolicyFile.js"
import { MonitorHub } from "../../../src/server/monitor/Hub.js"
import * as MonitorRpc from "../../../src/server/monitor/MonitorRpc.js"
import * as ThrottleKitServer from "../../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../../src/services/RateLimiter.js"
import { idleWatches } from "../../support/rawWire.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const MiB = 1024 * 1024
/** Heap in use after full collections. */
const heapMiB = (): number => {
  gc()
  gc()
  return process.memoryUsage().heapUsed / MiB
}

// 30 days: every check after the first must be denied, so the window may not roll over mid-test.
const config = `
limiters:
  flood:
    strategy: fixedWindow
    limit: 1
    windowMs: 2592000000
`

const CAP = 200
const OVER = 20
const CALLERS = 16
const MANY_CALLS = 60
const KEYS = Array.from({ length: 100 }, (_, i) => `many-${i}`)
const SINGLE_CALLS = 60
const HEAP_BOUND_MIB = 24

/** Waits (up to `tries` × 20 ms) until `done` holds. */
const until = (done: () => boolean, tries = 1500) =>
  Effect.gen(function*() {
    for (let i = 0; i < tries && !done(); i++) yield* Effect.sleep(20)
  })

/** The server on loopback, serving the flood policy, allowing `maxWatchStreams` Watch streams. */
const serverWith = (maxWatchStreams: number) =>
  Effect.flatMap(
    PolicyFile.parse(config, "test"),
    (policies) => Layer.build(ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, maxWatchStreams }))
  )

describe("Watch fan-out", () => {
  it.live(
    "idle Watch streams do not hold decisions up or memory; streams over the cap get RESOURCE_EXHAUSTED",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const context = yield* serverWith(CAP)
        const server = Context.get(context, ThrottleKitServer.GrpcServer)
        const hub = Context.get(context, MonitorHub)
        const limiter = Context.get(yield* Layer.build(ServiceBackend.layer({ target: server.address })), RateLimiter)

        // The one allowed check of each key: from here on every check is denied, every decision an event.
        yield* limiter.check("flood", "one")
        yield* limiter.checkMany("flood", KEYS)

        const streamsScope = yield* Scope.make()
        const watches = yield* Scope.extend(idleWatches(server.address, CAP + OVER), streamsScope)
        yield* until(() => (watches.ended().get(grpc.status.RESOURCE_EXHAUSTED) ?? 0) >= OVER && hub.watchers() >= CAP)
        expect(hub.watchers()).toBe(CAP)
        expect(watches.ended().get(grpc.status.RESOURCE_EXHAUSTED)).toBe(OVER)
        // Every open stream has been written to (its headers arrived with a first event).
        yield* until(() => watches.started() >= CAP, 1500).pipe(
          Effect.race(Effect.forever(Effect.zipRight(limiter.check("flood", "one"), Effect.sleep(10))))
        )
        expect(watches.started()).toBe(CAP)

        const before = heapMiB()
        const results = yield* Effect.forEach(
          Array.from({ length: CALLERS }, (_, c) => c),
          () =>
            Effect.gen(function*() {
              let denied = 0
              let decided = 0
              for (let i = 0; i < MANY_CALLS; i++) {
                const decisions = yield* limiter.checkMany("flood", KEYS)
                decided += decisions.length
                denied += decisions.filter((d) => !d.allowed).length
              }
              for (let i = 0; i < SINGLE_CALLS; i++) {
                const decision = yield* limiter.check("flood", "one")
                decided++
                if (!decision.allowed) denied++
              }
              return { decided, denied }
            }),
          { concurrency: "unbounded" }
        )
        const after = heapMiB()
        const expected = CALLERS * (MANY_CALLS * KEYS.length + SINGLE_CALLS)
        expect(results.reduce((n, r) => n + r.decided, 0)).toBe(expected)
        expect(results.reduce((n, r) => n + r.denied, 0)).toBe(expected)
        console.log(
          `[watch fan-out] ${CAP} idle Watch streams (+${OVER} refused), ${expected} denied decisions: heap ` +
            `${before.toFixed(1)} → ${after.toFixed(1)} MiB (bound +${HEAP_BOUND_MIB}); Watch events dropped ` +
            `by the streams' caps and windows so far: ${hub.watchDropped()}`
        )
        expect(after - before).toBeLessThan(HEAP_BOUND_MIB)
        // The idle streams are still open, and nothing more was refused.
        expect(hub.watchers()).toBe(CAP)
        expect(watches.ended().get(grpc.status.RESOURCE_EXHAUSTED)).toBe(OVER)

        // Closing them gives their slots back.
        yield* Scope.close(streamsScope, Effect.runSync(Effect.exit(Effect.void)))
        yield* until(() => hub.watchers() === 0)
        expect(hub.watchers()).toBe(0)
        const again = yield* idleWatches(server.address, 5)
        yield* until(() => hub.watchers() === 5)
        expect(hub.watchers()).toBe(5)
        expect(again.ended().size).toBe(0)
      })),
    { timeout: 180_000 }
  )

  it.effect("an event is encoded once, to the bytes its plain encoding has", () =>
    Effect.sync(() => {
      for (
        const key of ["k", "é-ключ-🔑", "x".repeat(4096)]
      ) {
        const event = new DenialEvent({
          at: 1_764_000_000_123,
          policy: "api",
          key,
          axis: "concurrency",
          limit: 100,
          remaining: 0,
          retryAfterMs: 250
        })
        const plain = toBinary(
          WatchResponseSchema,
          create(WatchResponseSchema, { denial: MonitorRpc.denialToWire(event) })
        )
        const shared = MonitorRpc.encodedWatchResponse(event)
        const bytes = toBinary(WatchResponseSchema, shared)
        expect(Buffer.from(bytes).equals(Buffer.from(plain))).toBe(true)
        // Written again (another stream), the same bytes.
        expect(Buffer.from(toBinary(WatchResponseSchema, shared)).equals(Buffer.from(plain))).toBe(true)
        expect(fromBinary(WatchResponseSchema, bytes).denial?.key).toBe(key)
      }
    }))

  it.live("maxWatchStreams 0 refuses every Watch; a value that is not a whole number fails the layer", () =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* serverWith(0)
      const server = Context.get(context, ThrottleKitServer.GrpcServer)
      const watches = yield* idleWatches(server.address, 3)
      yield* until(() => (watches.ended().get(grpc.status.RESOURCE_EXHAUSTED) ?? 0) >= 3)
      expect(watches.ended().get(grpc.status.RESOURCE_EXHAUSTED)).toBe(3)
      expect(Context.get(context, MonitorHub).watchers()).toBe(0)
      for (const bad of [-1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(Effect.scoped(serverWith(bad)))
        expect(error._tag).toBe("StartupError")
        expect(error.message).toContain("maxWatchStreams must be a whole number")
      }
    })))
})
