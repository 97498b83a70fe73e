/**
 * Exactness under load: several processes × many fibers on ONE limit through each shared door, and the
 * total admitted per window never exceeds the limit. Every worker is a separate Node process
 * (`fixtures/worker.ts`) started together on a signal; each reports how many checks were admitted in
 * each window (keyed by the decision's `resetAt`, which the Redis clock makes the same for all), and the
 * test sums them across processes. The counts are printed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startServer, tempFile } from "../server/cliProcess.js"
import { keySlot, RedisCluster, slotIn } from "../support/redisCluster.js"
import { redisServer } from "../support/redisServer.js"
import { fixedWindow, startWorker, type WorkerMessage } from "./support.js"

const LIMIT = 20
const WINDOW_MS = 1000
const RUN_MS = 4000
const policy = fixedWindow("exact", LIMIT, WINDOW_MS)

interface Totals {
  /** Admitted per window (`resetAt`, or `key@resetAt` when a worker checks several keys). */
  readonly byWindow: ReadonlyArray<readonly [string, number]>
  readonly admitted: number
  readonly denied: number
  readonly failures: Record<string, number>
}

/** Sums the workers' results per window. */
const total = (results: ReadonlyArray<WorkerMessage>): Totals => {
  const byWindow = new Map<string, number>()
  const failures: Record<string, number> = {}
  let denied = 0
  for (const result of results) {
    for (const [window, count] of Object.entries(result["allowedByWindow"] as Record<string, number>)) {
      byWindow.set(window, (byWindow.get(window) ?? 0) + count)
    }
    denied += result["denied"] as number
    for (const [tag, count] of Object.entries(result["failures"] as Record<string, number>)) {
      failures[tag] = (failures[tag] ?? 0) + count
    }
  }
  const sorted = Array.from(byWindow.entries()).sort(([a], [b]) => a.localeCompare(b))
  return { byWindow: sorted, admitted: sorted.reduce((n, [, c]) => n + c, 0), denied, failures }
}

/** Starts the workers, lets them all go at once, and collects their results. */
const race = (configs: ReadonlyArray<unknown>) =>
  Effect.gen(function*() {
    const workers = yield* Effect.forEach(configs, startWorker)
    yield* Effect.forEach(workers, (w) => w.take("ready", "120 seconds"), { concurrency: "unbounded" })
    yield* Effect.forEach(workers, (w) => w.send("go"))
    const results = yield* Effect.forEach(workers, (w) => w.take("result", "120 seconds"), { concurrency: "unbounded" })
    return total(results)
  })

const report = (door: string, processes: number, fibers: number, totals: Totals) => {
  console.log(
    `[exactness: ${door}] ${processes} processes x ${fibers} fibers, limit ${LIMIT} per ${WINDOW_MS} ms: ` +
      `${totals.admitted} admitted, ${totals.denied} denied, failures ${JSON.stringify(totals.failures)}; ` +
      `admitted per window: ${totals.byWindow.map(([, c]) => c).join(" ")}`
  )
}

const expectExact = (totals: Totals) => {
  // Never more than the limit in any window, and the load was heavy enough to reach it (so an
  // over-admission would have shown): a window was filled exactly and checks were denied.
  for (const [window, count] of totals.byWindow) expect([window, count <= LIMIT]).toEqual([window, true])
  expect(totals.byWindow.filter(([, count]) => count === LIMIT).length).toBeGreaterThanOrEqual(1)
  expect(totals.denied).toBeGreaterThan(0)
  // A call can only fail as a missed deadline on a starved machine (it is then not counted as admitted,
  // which can only lower the sums); nothing else is expected.
  expect(Object.keys(totals.failures).filter((tag) => tag !== "ServiceUnavailable")).toEqual([])
}

describe("several processes on one limit never admit more than the limit per window", () => {
  it.live(
    "Redis direct: 3 processes x 16 fibers, each with its own RedisBackend",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const config = {
          role: "hammer",
          door: "redis",
          url: redis.url,
          timeoutMs: 5000,
          policy,
          key: "shared",
          fibers: 16,
          durationMs: RUN_MS
        }
        const totals = yield* race([config, config, config])
        report("redis", 3, 16, totals)
        expectExact(totals)
      })),
    { timeout: 300_000 }
  )

  it.live(
    "Redis Cluster: 3 processes x 18 fibers on three keys, one on each primary",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* RedisCluster.start()
        const primaries = yield* Effect.promise(() => cluster.primaries())
        // One key per primary (the store key is "exact:<key>").
        const keys = primaries.map((primary) => {
          for (let i = 0;; i++) if (slotIn(keySlot(`exact:k${i}`), primary.slots)) return `k${i}`
        })
        const config = {
          role: "hammer",
          door: "redis",
          url: "",
          cluster: cluster.seeds.map((seed) => `${seed.host}:${seed.port}`),
          timeoutMs: 5000,
          policy,
          key: keys,
          fibers: 18,
          durationMs: RUN_MS
        }
        const totals = yield* race([config, config, config])
        report("redis cluster (3 primaries)", 3, 18, totals)
        expectExact(totals)
        // Every primary's key was filled to the limit in some window.
        for (const key of keys) {
          expect(totals.byWindow.some(([window, count]) => window.startsWith(`${key}@`) && count === LIMIT)).toBe(true)
        }
      })),
    { timeout: 300_000 }
  )

  it.live(
    "the server with the Redis store: 2 server processes on one Redis, 4 client processes",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const file = tempFile(
          "exact.yaml",
          `limiters:\n  exact:\n    strategy: fixedWindow\n    limit: ${LIMIT}\n    windowMs: ${WINDOW_MS}\n`
        )
        const servers = yield* Effect.forEach(
          [1, 2],
          () => startServer(["--config", file, "--port", "0", "--store", "redis", "--redis", redis.url]),
          { concurrency: 2 }
        )
        const client = (target: string) => ({
          role: "hammer",
          door: "service",
          target,
          deadlineMs: 5000,
          policy,
          key: "shared",
          fibers: 12,
          durationMs: RUN_MS
        })
        const totals = yield* race(servers.flatMap((s) => [client(s.address), client(s.address)]))
        report("service over redis", 4, 12, totals)
        expectExact(totals)
      })),
    { timeout: 300_000 }
  )
})
