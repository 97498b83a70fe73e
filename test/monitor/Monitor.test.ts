/**
 * The Monitor door end to end: our server (in this process, wired as `serve` wires it, memory store),
 * the `MonitorBackend` client over gRPC. A burst of denials shows in `GetSnapshot` (typed fields and the
 * decoded `raw_json`) and on a `Watch` stream, which ends cleanly when interrupted; the auth posture
 * (loopback only without a secret, the secret required of everyone with one); a `raw_json` that is not a
 * snapshot is a typed `SnapshotDecodeError` (from a stand-in server: ours never sends one); the client's
 * `layerConfig`.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Config,
  ConfigError,
  Context,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Redacted,
  Scope,
  Stream
} from "effect"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import { Monitor as MonitorDescriptor } from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { LENS_VERSION } from "../../src/monitor/Snapshot.js"
import * as GrpcServer from "../../src/server/GrpcServer.js"
import { implement } from "../../src/server/Service.js"
import { Monitor, type MonitorService } from "../../src/services/Monitor.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { nonLoopbackAddress, startServer, type TestServer } from "../fleet/support.js"
import { withConfig } from "../support/config.js"

// api's window is 30 days: the tests count its denials on the real clock, and a minute's window rolls
// over at every minute's start.
const config = `
limiters:
  api:
    strategy: fixedWindow
    limit: 3
    windowMs: 2592000000
  quiet:
    strategy: gcra
    limit: 100
    period: 1s
  pool:
    concurrency:
      minLimit: 4
      maxLimit: 4
`

const monitorIn = (
  target: string,
  secret?: string
): Effect.Effect<MonitorService, unknown, Scope.Scope> =>
  Effect.map(
    Layer.build(MonitorBackend.layer({ target, ...(secret === undefined ? {} : { secret: Redacted.make(secret) }) })),
    Context.get(Monitor)
  )

const limiterIn = (target: string) =>
  Effect.map(Layer.build(ServiceBackend.layer({ target })), Context.get(RateLimiter))

/** Waits until the server's hub has `n` Watch subscribers (a call subscribes once the server runs it). */
const subscribed = (server: TestServer, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && server.hub.watchers() < n; i++) yield* Effect.sleep(10)
    expect(server.hub.watchers()).toBe(n)
  })

const burst = (limiter: RateLimiterService, key: string, times: number) =>
  Effect.forEach(Array.from({ length: times }), () => limiter.check("api", key))

describe("Monitor door", () => {
  it.live("a burst of denials appears in the snapshot and on a Watch stream, which ends when interrupted", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config })
      const monitor = yield* monitorIn(server.target)
      const limiter = yield* limiterIn(server.target)

      const all = yield* Effect.fork(Stream.runCollect(Stream.take(monitor.watch(), 7)))
      const onlyQuiet = yield* Effect.fork(Stream.runCollect(monitor.watch("quiet")))
      yield* subscribed(server, 2)
      const decisions = yield* burst(limiter, "alice", 10)
      expect(decisions.filter((d) => !d.allowed).length).toBe(7)
      yield* limiter.check("quiet", "q")

      const events = Chunk.toArray(yield* Fiber.join(all))
      expect(events.map((e) => [e.policy, e.key, e.axis, e.limit, e.remaining])).toEqual(
        Array.from({ length: 7 }, () => ["api", "alice", "", 3, 0])
      )
      expect(events[0]!.retryAfterMs).toBeGreaterThan(0)

      const snapshot = yield* monitor.snapshot
      const api = snapshot.policies.find((p) => p.name === "api")!
      expect(api).toMatchObject({ kind: "limiter", strategy: "fixedWindow", allowed: 3, denied: 7, limit: 3 })
      expect(api.topDenied).toEqual([{ key: "alice", count: 7 }])
      expect(api.latency.n).toBe(10)
      expect(snapshot.recentDenials.length).toBe(7)
      expect(snapshot.meta).toMatchObject({ mode: "process", windowMs: 60_000, nodeId: "test-node" })
      expect(snapshot.guards).toEqual([
        { name: "pool", limit: 4, inflight: 0, share: 0, lGlobal: 0, nodes: 0, fenced: false }
      ])
      // The raw snapshot decodes to the same facts, plus what only it carries.
      const raw = Option.getOrThrow(snapshot.raw)
      expect(JSON.parse(snapshot.rawJson)).toMatchObject({ meta: { nodeId: "test-node" } })
      expect(raw.policies.find((p) => p.name === "api")).toMatchObject({
        allowed: 3,
        denied: 7,
        allowedTotal: 3,
        deniedTotal: 7,
        deniedByAxis: { "": 7 }
      })
      expect(raw.health.backend).toBe("memory")

      // A stream with no matching denials runs until interrupted, which cancels the call on the server.
      yield* Fiber.interrupt(onlyQuiet)
      yield* subscribedCount(server, 0)
    })))

  it.live("a Watch reader is refused off loopback without a secret; snapshots too", () =>
    Effect.scoped(Effect.gen(function*() {
      // The server listens on 0.0.0.0; the client reaches it through this machine's non-loopback address.
      const remote = yield* nonLoopbackAddress
      console.log(`non-loopback peer via ${remote.address} (${remote.how})`)
      const server = yield* startServer({ config, host: "0.0.0.0" })
      const far = yield* monitorIn(`${remote.address}:${server.port}`)
      expect((yield* Effect.flip(far.snapshot))._tag).toBe("Unauthenticated")
      const watchError = yield* Effect.flip(Stream.runDrain(far.watch()))
      expect(watchError._tag).toBe("Unauthenticated")
      const near = yield* monitorIn(server.target)
      expect((yield* near.snapshot).policies.length).toBe(3)
    })))

  it.live("with a secret, a caller without it is refused and one with it is served (remote or not)", () =>
    Effect.scoped(Effect.gen(function*() {
      const remote = yield* nonLoopbackAddress
      const server = yield* startServer({ config, host: "0.0.0.0", monitorSecret: "lens-key" })
      const without = yield* monitorIn(server.target)
      expect((yield* Effect.flip(without.snapshot))._tag).toBe("Unauthenticated")
      expect((yield* Effect.flip(Stream.runDrain(without.watch())))._tag).toBe("Unauthenticated")
      const wrong = yield* monitorIn(server.target, "lens-kez")
      expect((yield* Effect.flip(wrong.snapshot))._tag).toBe("Unauthenticated")
      const withIt = yield* monitorIn(`${remote.address}:${server.port}`, "lens-key")
      expect((yield* withIt.snapshot).meta.mode).toBe("process")
      const limiter = yield* limiterIn(server.target)
      const watcher = yield* Effect.fork(Stream.runCollect(Stream.take(withIt.watch("api"), 1)))
      yield* subscribed(server, 1)
      yield* burst(limiter, "bob", 4)
      expect(Chunk.toArray(yield* Fiber.join(watcher))[0]).toMatchObject({ policy: "api", key: "bob" })
    })))

  it.live("layerConfig reads the target and the secret from Config; a missing value fails with ConfigError", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config, monitorSecret: "lens-key" })
      const monitor = MonitorBackend.layerConfig({
        target: Config.string("THROTTLEKIT_TARGET"),
        secret: Config.redacted("THROTTLEKIT_MONITOR_SECRET")
      })
      const snapshot = yield* Effect.provide(
        Effect.flatMap(Monitor, (monitor) => monitor.snapshot),
        withConfig(monitor, [["THROTTLEKIT_TARGET", server.target], ["THROTTLEKIT_MONITOR_SECRET", "lens-key"]])
      )
      expect(snapshot.policies.length).toBe(3)
      const missing = yield* Effect.flip(Effect.scoped(Layer.build(withConfig(monitor, []))))
      expect(ConfigError.isConfigError(missing)).toBe(true)
      expect(String(missing)).toContain("THROTTLEKIT_TARGET")
    })))

  it.live("an open Watch stream ends cleanly when the server shuts down", () =>
    Effect.scoped(Effect.gen(function*() {
      const serverScope = yield* Scope.make()
      const server = yield* Scope.extend(startServer({ config }), serverScope)
      const monitor = yield* monitorIn(server.target)
      const watcher = yield* Effect.fork(Stream.runCollect(monitor.watch()))
      yield* subscribed(server, 1)
      yield* Scope.close(serverScope, Exit.void)
      const exit = yield* Fiber.await(watcher)
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(server.hub.watchers()).toBe(0)
    })))

  it.live("a raw_json that is not a snapshot is a SnapshotDecodeError, not a defect; another server's is kept as text", () =>
    Effect.scoped(Effect.gen(function*() {
      const standIn = (lensVersion: string, rawJson: string) =>
        implement(MonitorDescriptor, {
          getSnapshot: () => Effect.succeed({ snapshot: { meta: { mode: "process", lensVersion }, rawJson } }),
          watch: () => Stream.empty
        })
      const monitorOf = (service: ReturnType<typeof standIn>) =>
        Effect.flatMap(
          GrpcServer.make({ host: "127.0.0.1", port: 0 }, [service]),
          (running) => monitorIn(running.address)
        )
      // Not JSON at all, from any server.
      const garbage = yield* monitorOf(standIn("anything", "{\"meta\": 42"))
      const notJson = yield* Effect.flip(garbage.snapshot)
      expect(notJson._tag).toBe("SnapshotDecodeError")
      expect(notJson.message).toContain("raw_json is not JSON")
      // JSON, but not our snapshot, from a server that says it is throttlekit-effect.
      const ours = yield* monitorOf(standIn(LENS_VERSION, "{\"meta\": 42}"))
      const wrongShape = yield* Effect.flip(ours.snapshot)
      expect(wrongShape._tag).toBe("SnapshotDecodeError")
      expect(wrongShape.message).toContain("raw_json")
      // Another server's own shape (the reference server's is internal): kept as text, not decoded.
      const foreign = yield* monitorOf(standIn("0.2.0-experimental.0", "{\"stats\": []}"))
      const snapshot = yield* foreign.snapshot
      expect(Option.isNone(snapshot.raw)).toBe(true)
      expect(snapshot.rawJson).toBe("{\"stats\": []}")
      expect(snapshot.meta.lensVersion).toBe("0.2.0-experimental.0")
    })))
})

/** Waits until the hub has exactly `n` subscribers. */
const subscribedCount = (server: TestServer, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && server.hub.watchers() !== n; i++) yield* Effect.sleep(10)
    expect(server.hub.watchers()).toBe(n)
  })
