/**
 * The fleet bound, for real: three `throttlekit-effect serve --store redis` processes on one private
 * Redis, and clients hammering one federated policy through all of them for several short windows.
 *
 * - Window-coupled: tier-1 checks (each server answers `Check` from credits it leases from Redis) and
 *   tier-2 leased clients (`Fleet.leased`, through the servers' `Fleet.Reserve`) share one budget of
 *   LIMIT per 500 ms window. Every admitted decision reports the window whose budget paid for it
 *   (`resetAt` is the grant's boundary, by the Redis clock), and no window ever admits more than LIMIT.
 * - At a moderate demand (about 1.05 × LIMIT per window, so holders still have leftovers at the boundary),
 *   coupled leased clients and uncoupled ones (which keep leftovers across the boundary) side by side.
 *   Each admission is placed in the window in which it happened (these clients spend in this process, on
 *   the clock Redis also reads): coupled, at most LIMIT per window; uncoupled, within LIMIT + N × BATCH
 *   for N holders. (The reference's figure is LIMIT + N × (BATCH − 1), not counting the unit spent by the
 *   check that leased. A grant made just before a boundary and received just after it brings its whole
 *   batch across, so N × BATCH is the bound that holds for every timing; the per-window counts are
 *   printed against both. Whether an uncoupled run overshoots at all depends on the timing.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Context, Effect, Layer, Option } from "effect"
import * as FleetBackend from "../../src/clients/FleetBackend.js"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import type { Decision } from "../../src/Decision.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { Fleet, type LeasedLimiter } from "../../src/services/Fleet.js"
import { Monitor } from "../../src/services/Monitor.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { type ServerProcess, startServer, tempFile } from "../server/cliProcess.js"
import { redisServer } from "../support/redisServer.js"

const LIMIT = 60
const WINDOW_MS = 500
const BATCH = 5
const RUN_MS = 3000

const config = `
limiters:
  coupled:
    strategy: fixedWindow
    limit: ${LIMIT}
    windowMs: ${WINDOW_MS}
    federated:
      batch: ${BATCH}
  carried:
    strategy: fixedWindow
    limit: ${LIMIT}
    windowMs: ${WINDOW_MS}
    federated:
      batch: ${BATCH}
`

/** Admissions per window (keyed by the window's end), split by tier. */
class Tally {
  readonly byWindow = new Map<number, { tier1: number; tier2: number }>()
  denied = { tier1: 0, tier2: 0 }

  add(windowEnd: number, tier: "tier1" | "tier2"): void {
    const row = this.byWindow.get(windowEnd) ?? { tier1: 0, tier2: 0 }
    row[tier]++
    this.byWindow.set(windowEnd, row)
  }

  rows(): Array<{ windowEnd: number; tier1: number; tier2: number; total: number }> {
    return Array.from(this.byWindow, ([windowEnd, r]) => ({ windowEnd, ...r, total: r.tier1 + r.tier2 }))
      .sort((a, b) => a.windowEnd - b.windowEnd)
  }
}

/** Runs `step` in a loop until `until` (epoch-ms), yielding to the event loop between steps (full demand). */
const loopUntil = <E>(until: number, step: Effect.Effect<void, E>) =>
  Effect.gen(function*() {
    while ((yield* Clock.currentTimeMillis) < until) {
      yield* step
      yield* Effect.sleep(0)
    }
  })

const serviceIn = (target: string) =>
  Effect.map(Layer.build(ServiceBackend.layer({ target, deadline: "5 seconds" })), Context.get(RateLimiter))

const fleetIn = (target: string) =>
  Effect.map(Layer.build(FleetBackend.layer({ target, deadlineMs: 5000 })), Context.get(Fleet))

describe("fleet exactness (3 server processes on one Redis)", () => {
  it.live(
    "window-coupled: at most LIMIT per window across servers and leased clients; uncoupled within the bound",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const file = tempFile("fleet.yaml", config)
        const servers: ReadonlyArray<ServerProcess> = yield* Effect.all(
          [0, 1, 2].map(() => startServer(["--config", file, "--port", "0", "--store", "redis", "--redis", redis.url])),
          { concurrency: "unbounded" }
        )
        const targets = servers.map((s) => `127.0.0.1:${s.port}`)

        // --- window-coupled: tier 1 (Check on each server) + tier 2 (leased clients via each server) ---
        const coupled = new Tally()
        const checkers: ReadonlyArray<RateLimiterService> = yield* Effect.forEach(targets, serviceIn)
        const fleets = yield* Effect.forEach(targets, fleetIn)
        const leased: ReadonlyArray<LeasedLimiter> = yield* Effect.forEach(
          fleets,
          (fleet) => fleet.leased("coupled", { batch: BATCH, windowCoupled: true })
        )
        const record = (tier: "tier1" | "tier2") => (decision: Decision) =>
          Effect.sync(() => {
            if (decision.allowed) coupled.add(decision.resetAt, tier)
            else coupled.denied[tier]++
          })
        // Start on a window boundary so that the run covers whole windows.
        yield* Effect.sleep(WINDOW_MS - (Date.now() % WINDOW_MS))
        const start = Date.now()
        const until = start + RUN_MS
        yield* Effect.all(
          [
            ...checkers.flatMap((checker) =>
              [0, 1, 2].map(() =>
                loopUntil(until, Effect.flatMap(checker.check("coupled", "coupled"), record("tier1")))
              )
            ),
            ...leased.flatMap((limiter) =>
              [0, 1, 2].map(() => loopUntil(until, Effect.flatMap(limiter.check(), record("tier2"))))
            )
          ],
          { concurrency: "unbounded" }
        )
        const rows = coupled.rows()
        console.log(
          `window-coupled, limit ${LIMIT} per ${WINDOW_MS} ms, batch ${BATCH}, 3 servers (tier 1) + 3 leased clients:\n` +
            rows.map((r) =>
              `  window ending ${r.windowEnd}: ${r.total} admitted (tier 1 ${r.tier1}, tier 2 ${r.tier2})`
            ).join("\n") +
            `\n  denied: tier 1 ${coupled.denied.tier1}, tier 2 ${coupled.denied.tier2}`
        )
        expect(rows.length).toBeGreaterThanOrEqual(RUN_MS / WINDOW_MS)
        for (const row of rows) {
          expect(row.total).toBeLessThanOrEqual(LIMIT)
          expect(row.windowEnd % WINDOW_MS).toBe(0)
        }
        // The budget was under real pressure from both tiers.
        expect(coupled.denied.tier1).toBeGreaterThan(0)
        expect(coupled.denied.tier2).toBeGreaterThan(0)
        expect(rows.some((r) => r.total >= LIMIT / 2)).toBe(true)
        expect(rows.reduce((n, r) => n + r.tier1, 0)).toBeGreaterThan(0)
        expect(rows.reduce((n, r) => n + r.tier2, 0)).toBeGreaterThan(0)

        // Each server's Monitor saw its own tier-1 decisions.
        for (const target of targets) {
          const monitor = yield* Effect.map(Layer.build(MonitorBackend.layer({ target })), Context.get(Monitor))
          const snapshot = yield* monitor.snapshot
          const seen = snapshot.policies.find((p) => p.name === "coupled")!
          expect(seen.allowed + seen.denied).toBeGreaterThan(0)
          expect(Option.getOrThrow(snapshot.raw).health.backend).toBe("redis")
        }

        // --- moderate demand (about 1.05 × LIMIT per window), where leftovers are held at the boundary:
        // coupled leased clients vs uncoupled ones, each admission placed in the window it happened in
        // (these clients spend in this process, on the clock Redis reads too) ---
        const holders = 4
        const spendEveryMs = Math.round((WINDOW_MS * holders) / (LIMIT * 1.05))
        const wallTally = () => new Map<number, number>()
        const coupledWall = wallTally()
        const carriedWall = wallTally()
        const clientsOf = (policy: string, domain: string, windowCoupled: boolean) =>
          Effect.forEach(
            Array.from({ length: holders }, (_, i) => fleets[i % fleets.length]!),
            (fleet) => fleet.leased(policy, { domain, batch: BATCH, windowCoupled })
          )
        const coupledClients = yield* clientsOf("coupled", "moderate-coupled", true)
        const carriedClients = yield* clientsOf("carried", "moderate-carried", false)
        const spendInto = (tally: Map<number, number>, coupled: boolean) => (decision: Decision) =>
          Effect.sync(() => {
            if (!decision.allowed) return
            // A coupled credit is spent inside the window that granted it (after the grant, before its
            // boundary), so its resetAt is the window it was spent in. An uncoupled one may be spent later:
            // it happened in this process just before `check` returned.
            const windowEnd = coupled ? decision.resetAt : (Math.floor(Date.now() / WINDOW_MS) + 1) * WINDOW_MS
            tally.set(windowEnd, (tally.get(windowEnd) ?? 0) + 1)
          })
        const paced = (until: number, step: Effect.Effect<void, unknown>) =>
          Effect.gen(function*() {
            // On a fixed schedule (not "sleep after each step"), with the clients' phases spread.
            let next = Date.now() + Math.floor(Math.random() * spendEveryMs)
            while (next < until) {
              yield* Effect.sleep(Math.max(0, next - Date.now()))
              yield* step
              next += spendEveryMs
            }
          })
        yield* Effect.sleep(WINDOW_MS - (Date.now() % WINDOW_MS))
        const moderateUntil = Date.now() + RUN_MS
        yield* Effect.all(
          [
            ...coupledClients.map((c) => paced(moderateUntil, Effect.flatMap(c.check(), spendInto(coupledWall, true)))),
            ...carriedClients.map((c) => paced(moderateUntil, Effect.flatMap(c.check(), spendInto(carriedWall, false))))
          ],
          { concurrency: "unbounded" }
        )
        const bound = LIMIT + holders * BATCH
        const referenceBound = LIMIT + holders * (BATCH - 1)
        const sorted = (tally: Map<number, number>) => Array.from(tally).sort((a, b) => a[0] - b[0])
        const describeRows = (rows: Array<[number, number]>) =>
          rows.map(([end, n]) =>
            `  window ending ${end}: ${n} admitted${n > LIMIT ? ` (overshoot ${n - LIMIT})` : ""}${
              n > referenceBound ? " — above the reference figure" : ""
            }`
          ).join("\n")
        console.log(
          `moderate demand, ${holders} leased clients each, one check every ${spendEveryMs} ms:\n` +
            ` window-coupled (bound ${LIMIT}):\n${describeRows(sorted(coupledWall))}\n` +
            ` not coupled (bound ${bound}; reference figure ${referenceBound}):\n${describeRows(sorted(carriedWall))}`
        )
        expect(coupledWall.size).toBeGreaterThanOrEqual(RUN_MS / WINDOW_MS)
        expect(carriedWall.size).toBeGreaterThanOrEqual(RUN_MS / WINDOW_MS)
        for (const [, n] of coupledWall) expect(n).toBeLessThanOrEqual(LIMIT)
        for (const [, n] of carriedWall) expect(n).toBeLessThanOrEqual(bound)

        for (const server of servers) {
          const ended = yield* server.stop
          expect(ended.code).toBe(0)
        }
      })),
    { timeout: 180_000 }
  )
})
