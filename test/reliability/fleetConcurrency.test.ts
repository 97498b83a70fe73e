/**
 * `distributedConcurrency` across three real `throttlekit-effect serve` processes on one Redis (node C
 * reaches it through a TCP proxy the test can cut), each with its own `--node-id`, one pinned local
 * ceiling of 6 per node (so the fleet's global ceiling is 6, split 2 / 2 / 2), heartbeats every 500 ms.
 * Four clients per node hammer `Admit` (hold 60 ms, release) the whole time.
 *
 * - The fleet-wide in-flight count never exceeds 6: counted by the clients (a slot counts from its
 *   admission's answer to its release's sending, inside the server's own span, so never more than the
 *   servers hold) and read from the coordinator hash in Redis every 25 ms (the in-flight counts the nodes
 *   reported, and the shares granted).
 * - Node C cut off from Redis (the proxy paused): it fences itself (the Monitor reports `fenced`) and
 *   answers its clients with denials on the concurrency axis, never UNAVAILABLE (fail-closed, as the core:
 *   admission is local, so a cut-off node denies rather than erroring); A and B take its share once its
 *   lease lapses; when the proxy resumes, C admits again.
 * - Node B killed (SIGKILL) under load: its share goes to A and C once its heartbeat lapses. The times
 *   are measured and printed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schedule } from "effect"
import { Redis } from "ioredis"
import { performance } from "node:perf_hooks"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { MonitorService } from "../../src/services/Monitor.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import { type ServerProcess, startServer, tempFile } from "../server/cliProcess.js"
import { startPausableProxy } from "../support/pausableProxy.js"
import { startRedisServer } from "../support/redisServer.js"
import { eventually } from "./support.js"

const HEARTBEAT_MS = 500
const CEILING = 6
const KEY = "tk:fedconc:pool"
const CONFIG = [
  "limiters:",
  "  pool:",
  "    distributedConcurrency:",
  `      minLimit: ${CEILING}`,
  `      maxLimit: ${CEILING}`,
  `      heartbeatMs: ${HEARTBEAT_MS}`,
  ""
].join("\n")

/** What the clients of one node saw. */
class NodeCount {
  held = 0
  admitted = 0
  denied = 0
  deniedConcurrency = 0
  failures: Record<string, number> = {}
  lastAdmitAt = 0
}

/** What the clients of the whole fleet saw, and what the coordinator hash said. */
class FleetCount {
  held = 0
  maxHeld = 0
  maxReportedInflight = 0
  maxSharesGranted = 0
  samples = 0
  readonly nodes: Record<string, NodeCount> = { A: new NodeCount(), B: new NodeCount(), C: new NodeCount() }
}

/** One client: admit, hold 60 ms, release, again; a denial or failure waits a little. */
const client = (name: string, limiter: RateLimiterService, fleet: FleetCount): Effect.Effect<never> => {
  const node = fleet.nodes[name]!
  const once = Effect.gen(function*() {
    const exit = yield* Effect.exit(limiter.leases.acquire("pool", "k"))
    if (Exit.isFailure(exit)) {
      const tag = exit.cause._tag === "Fail" ? exit.cause.error._tag : exit.cause._tag
      node.failures[tag] = (node.failures[tag] ?? 0) + 1
      return yield* Effect.sleep("20 millis")
    }
    const admission = exit.value
    if (!admission.held) {
      node.denied++
      if (admission.bindingAxis === "concurrency") node.deniedConcurrency++
      return yield* Effect.sleep("5 millis")
    }
    fleet.held++
    node.held++
    node.admitted++
    node.lastAdmitAt = performance.now()
    fleet.maxHeld = Math.max(fleet.maxHeld, fleet.held)
    yield* Effect.sleep("60 millis")
    fleet.held--
    node.held--
    yield* Effect.ignore(limiter.leases.release(admission.leaseId, false))
  })
  return Effect.forever(once)
}

/** The coordinator hash: node id → [lLocal, inflight, expiresAt, share]. */
const readHash = (redis: Redis) =>
  Effect.map(Effect.promise(() => redis.hgetall(KEY)), (hash) => {
    const nodes = new Map<string, ReadonlyArray<number>>()
    for (const [id, value] of Object.entries(hash)) nodes.set(id, value.split(" ").map(Number))
    return nodes
  })

/** Samples the hash every 25 ms: the in-flight counts reported and the shares granted, summed. */
const sampler = (redis: Redis, fleet: FleetCount): Effect.Effect<never> =>
  Effect.forever(Effect.gen(function*() {
    const nodes = yield* readHash(redis)
    let inflight = 0
    let shares = 0
    for (const [, value] of nodes) {
      inflight += value[1]!
      shares += value[3]!
    }
    fleet.samples++
    fleet.maxReportedInflight = Math.max(fleet.maxReportedInflight, inflight)
    fleet.maxSharesGranted = Math.max(fleet.maxSharesGranted, shares)
    yield* Effect.sleep("25 millis")
  }))

const sinceMs = (start: number) => Math.round(performance.now() - start)

/** Runs `read` every 20 ms until `done` holds of its result; fails after `seconds`. */
const pollUntil = <A, E>(read: Effect.Effect<A, E>, done: (a: A) => boolean, seconds: number) =>
  Effect.repeat(read, { until: done, schedule: Schedule.spaced("20 millis") }).pipe(
    Effect.timeoutFail({
      duration: `${seconds} seconds`,
      onTimeout: () => new Error(`condition not met in ${seconds} s`)
    })
  )

describe("distributedConcurrency across three server processes", () => {
  it.live(
    "keeps the fleet under one ceiling; fences a cut-off node; redistributes a killed node's share",
    () =>
      Effect.gen(function*() {
        const redisServer = yield* Effect.acquireRelease(
          Effect.promise(() => startRedisServer()),
          (handle) => Effect.promise(() => handle.close())
        )
        const proxy = yield* Effect.acquireRelease(
          Effect.promise(() => startPausableProxy(redisServer.port)),
          (p) => Effect.promise(() => p.close())
        )
        const redis = yield* Effect.acquireRelease(
          Effect.sync(() => new Redis(redisServer.url, { maxRetriesPerRequest: 1 })),
          (r) => Effect.sync(() => r.disconnect())
        )
        const config = tempFile("fleet.yaml", CONFIG)
        const serve = (nodeId: string, url: string) =>
          startServer(["--config", config, "--port", "0", "--redis", url, "--node-id", nodeId])
        const servers: Record<string, ServerProcess> = {}
        servers["A"] = yield* serve("A", redisServer.url)
        servers["B"] = yield* serve("B", redisServer.url)
        servers["C"] = yield* serve("C", `redis://127.0.0.1:${proxy.port}`)

        const fleet = new FleetCount()
        const monitors: Record<string, MonitorService> = {}
        for (const [name, server] of Object.entries(servers)) {
          const limiter = yield* ServiceBackend.make({ target: server.address, deadline: "2 seconds" })
          monitors[name] = yield* MonitorBackend.make({ target: server.address })
          for (let i = 0; i < 4; i++) yield* Effect.forkScoped(client(name, limiter, fleet))
        }
        const guard = (name: string) =>
          Effect.map(monitors[name]!.snapshot, (snapshot) => snapshot.guards.find((g) => g.name === "pool")!)

        // Converged: three nodes, 2 each.
        const converged = performance.now()
        yield* pollUntil(
          readHash(redis),
          (nodes) => nodes.size === 3 && [...nodes.values()].every((v) => v[3] === 2),
          30
        )
        console.log(`[fleet] converged to 2 / 2 / 2 in ${sinceMs(converged)} ms`)
        const sampling = yield* Effect.forkScoped(sampler(redis, fleet))
        yield* Effect.sleep("2 seconds")
        const steady = yield* Effect.all([guard("A"), guard("B"), guard("C")])
        for (const g of steady) {
          expect(g).toMatchObject({ share: 2, lGlobal: CEILING, nodes: 3, fenced: false })
        }
        for (const name of ["A", "B", "C"]) expect(fleet.nodes[name]!.admitted).toBeGreaterThan(0)

        // Cut C off from Redis.
        const cut = performance.now()
        proxy.pause()
        const cAdmittedAtCut = fleet.nodes["C"]!.admitted
        yield* pollUntil(guard("C"), (g) => g.fenced, 10)
        const fencedAfter = sinceMs(cut)
        const cAdmittedAtFence = fleet.nodes["C"]!.admitted
        yield* pollUntil(
          readHash(redis),
          (nodes) => !nodes.has("C") && nodes.get("A")?.[3] === 3 && nodes.get("B")?.[3] === 3,
          10
        )
        const takenOverAfter = sinceMs(cut)
        const deniedBefore = fleet.nodes["C"]!.deniedConcurrency
        yield* Effect.sleep("1 second")
        const whileCut = fleet.nodes["C"]!
        expect(whileCut.admitted).toBe(cAdmittedAtFence) // nothing admitted while fenced
        expect(whileCut.deniedConcurrency).toBeGreaterThan(deniedBefore) // denials, on the concurrency axis
        expect(whileCut.failures).toEqual({}) // never UNAVAILABLE (nor any other error)
        console.log(
          `[fleet] C cut off: fenced after ${fencedAfter} ms (admitted ${cAdmittedAtFence - cAdmittedAtCut} ` +
            `after the cut), A and B hold its share after ${takenOverAfter} ms`
        )

        // C reconnects.
        const healed = performance.now()
        proxy.resume()
        yield* pollUntil(guard("C"), (g) => !g.fenced && g.share > 0, 15)
        yield* eventually("C admitting again", () => fleet.nodes["C"]!.admitted > cAdmittedAtFence, "15 seconds")
        console.log(`[fleet] C admits again ${sinceMs(healed)} ms after Redis came back`)
        yield* pollUntil(
          readHash(redis),
          (nodes) => nodes.size === 3 && [...nodes.values()].every((v) => v[3] === 2),
          15
        )

        // Kill B mid-load.
        const killed = performance.now()
        servers["B"]!.child.kill("SIGKILL")
        yield* pollUntil(
          readHash(redis),
          (nodes) => !nodes.has("B") && nodes.get("A")?.[3] === 3 && nodes.get("C")?.[3] === 3,
          10
        )
        const redistributedAfter = sinceMs(killed)
        const after = yield* Effect.all([guard("A"), guard("C")])
        for (const g of after) expect(g).toMatchObject({ share: 3, nodes: 2, fenced: false })
        yield* Effect.sleep("1 second")
        console.log(`[fleet] B killed: its share went to A and C after ${redistributedAfter} ms`)

        yield* Fiber.interrupt(sampling)
        console.log(
          `[fleet] in flight at most ${fleet.maxHeld} (clients), ${fleet.maxReportedInflight} (reported to Redis, ` +
            `${fleet.samples} samples), shares granted at most ${fleet.maxSharesGranted} in all; ceiling ${CEILING}; ` +
            `admitted A ${fleet.nodes["A"]!.admitted}, B ${fleet.nodes["B"]!.admitted}, C ${fleet.nodes["C"]!.admitted}`
        )
        expect(fleet.maxHeld).toBeLessThanOrEqual(CEILING)
        expect(fleet.maxReportedInflight).toBeLessThanOrEqual(CEILING)
        expect(fleet.maxSharesGranted).toBeLessThanOrEqual(CEILING)
        expect(fleet.maxHeld).toBe(CEILING) // the fleet did use its whole ceiling
        // the cut and the kill came within a few heartbeats (lease 2 × 500 ms, fence 250 ms before it lapses)
        expect(fencedAfter).toBeLessThan(2 * HEARTBEAT_MS + 1000)
        expect(redistributedAfter).toBeLessThan(6 * HEARTBEAT_MS)
      }).pipe(Effect.scoped),
    { timeout: 240_000 }
  )
})
