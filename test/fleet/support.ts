/**
 * Test wiring for the fleet and Monitor doors: our gRPC server, in this process, built as
 * `throttlekit-effect serve` builds it (`ThrottleKitServer.layer` over the memory store), on a free port.
 */
import { Context, Effect, Layer, Redacted, type Scope } from "effect"
import { spawnSync } from "node:child_process"
import { networkInterfaces } from "node:os"
import type { CoordinatorService } from "../../src/coordinator/Coordinator.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import type { PolicySet } from "../../src/PolicySet.js"
import type { Hub } from "../../src/server/monitor/Hub.js"
import { MonitorHub } from "../../src/server/monitor/Hub.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { mapLocal } from "../../src/services/RateLimiterStore.js"

/** What a test server is started with. */
export interface TestServerOptions {
  readonly config: string
  /** The interface to bind (default 127.0.0.1). */
  readonly host?: string
  readonly monitorSecret?: string
  readonly fleetSecret?: string
  /** The coordinator the doors use (default an in-process one). */
  readonly coordinator?: CoordinatorService
}

/** A running test server. */
export interface TestServer {
  readonly port: number
  /** A loopback target for clients. */
  readonly target: string
  /** The Monitor hub it serves from. */
  readonly hub: Hub
}

/** Starts the server for the life of the scope. */
export const startServer = (options: TestServerOptions): Effect.Effect<TestServer, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(options.config, "test")
    const context = yield* Layer.build(ThrottleKitServer.layer({
      policies,
      host: options.host ?? "127.0.0.1",
      port: 0,
      nodeId: "test-node",
      ...(options.monitorSecret === undefined ? {} : { monitorSecret: Redacted.make(options.monitorSecret) }),
      ...(options.fleetSecret === undefined ? {} : { fleetSecret: Redacted.make(options.fleetSecret) }),
      ...(options.coordinator === undefined ? {} : { coordinator: options.coordinator })
    }))
    const server = Context.get(context, ThrottleKitServer.GrpcServer)
    return { port: server.port, target: `127.0.0.1:${server.port}`, hub: Context.get(context, MonitorHub) }
  })

/**
 * A non-loopback IPv4 address of this machine, to reach a server bound on 0.0.0.0 as a remote peer would
 * (the traffic stays on this machine). Uses an existing interface's address; when there is none and we
 * are root, adds a dummy interface `tkdummy0` with 10.203.0.1/32 and removes it when the scope closes.
 * Fails (never skips) when neither works. `how` says which was used.
 */
export const nonLoopbackAddress: Effect.Effect<
  { readonly address: string; readonly how: string },
  Error,
  Scope.Scope
> = Effect.suspend(() => {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family === "IPv4" && !a.internal && !a.address.startsWith("127.")) {
        return Effect.succeed({ address: a.address, how: `the address of this machine's interface ${name}` })
      }
    }
  }
  const ip = (...args: ReadonlyArray<string>) => spawnSync("ip", args, { stdio: "ignore" }).status === 0
  return Effect.acquireRelease(
    Effect.suspend(() =>
      ip("link", "add", "tkdummy0", "type", "dummy") && ip("addr", "add", "10.203.0.1/32", "dev", "tkdummy0") &&
        ip("link", "set", "tkdummy0", "up")
        ? Effect.succeed({ address: "10.203.0.1", how: "a dummy interface tkdummy0 added for this test" })
        : Effect.fail(
          new Error("no non-loopback IPv4 address on this machine, and `ip link add tkdummy0 type dummy` failed")
        )
    ),
    () => Effect.sync(() => ip("link", "del", "tkdummy0"))
  )
})

/** The Memory store for `policies`, counting the checks that reach it (what a two-tier wrapper saves). */
export const countingStore = (policies: PolicySet) =>
  Effect.map(MemoryBackend.makeStore({ policies }), (inner) => {
    const calls = { check: 0 }
    const store = mapLocal(inner, {
      limiter: (_policy, bound) => ({
        ...bound,
        check: (key, cost) =>
          Effect.suspend(() => {
            calls.check++
            return bound.check(key, cost)
          })
      })
    })
    return { store, calls }
  })
