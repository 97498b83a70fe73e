/**
 * The Service door under real faults: `throttlekit-effect serve` runs as a child process (the CLI, as a
 * user runs it) and is SIGKILLed under load, then started again on the same port; a client process that
 * holds admissions is SIGKILLed. Clients get typed errors within their deadline, never a defect or a
 * hang, and recover by themselves; a crashed client's slots are reclaimed within TTL + sweep.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Schedule } from "effect"
import type { Decision } from "../../src/Decision.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { startServer, tempFile } from "../server/cliProcess.js"
import { eventually, hammer, pool, Recorder, startWorker } from "./support.js"

/** The client's per-call deadline. */
const DEADLINE_MS = 500
/** Room for a loaded machine (two cores shared by parallel test files, GC pauses). */
const SLACK_MS = 2000
const BOUND_MS = DEADLINE_MS + SLACK_MS
const LEASE_TTL_MS = 2000

const policyFile = tempFile(
  "faults.yaml",
  `
limiters:
  window:
    strategy: fixedWindow
    limit: 1000000000
    windowMs: 3600000
  slots:
    concurrency:
      algorithm: fixed
      minLimit: 2
      maxLimit: 2
`
)

const serverArgs = (
  port: number
) => ["--config", policyFile, "--port", String(port), "--lease-ttl-ms", `${LEASE_TTL_MS}`]

const clientOf = (target: string) =>
  Effect.map(
    Layer.build(ServiceBackend.layer({ target, deadline: Duration.millis(DEADLINE_MS), leaseTtlMs: LEASE_TTL_MS })),
    (context) => Context.get(context, RateLimiter)
  )

describe("the server killed and restarted under load", () => {
  it.live(
    "calls in between fail with typed errors within the deadline; the client recovers by itself",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const first = yield* startServer(serverArgs(0))
        const limiter = yield* clientOf(first.address)
        const recorder = new Recorder<Decision>()
        let stopping = false
        const load = yield* Effect.fork(
          hammer(recorder, 8, (fiber) => limiter.check("window", `k${fiber}`), Effect.sync(() => stopping), 20)
        )
        yield* eventually("calls to succeed before the crash", () => recorder.outcomes.length >= 50)

        first.child.kill("SIGKILL")
        yield* first.stop
        const downAt = recorder.now()
        yield* Effect.sleep("1 second")
        const restartAt = recorder.now()
        // The same port, as a supervisor would restart it.
        const second = yield* startServer(serverArgs(first.port))
        const upAt = recorder.now()
        yield* eventually(
          "a call to succeed after the restart, without help",
          () => recorder.outcomes.some((o) => o.start >= upAt && o.ending === "success"),
          "30 seconds"
        )
        const recovered = recorder.outcomes.find((o) => o.start >= upAt && o.ending === "success")!
        stopping = true
        yield* Fiber.join(load).pipe(Effect.timeout(Duration.millis(BOUND_MS * 2)))

        const down = recorder.tally((o) => o.start >= downAt && o.end <= restartAt)
        const maxFailedMs = recorder.maxLatency((o) => o.ending !== "success")
        console.log(
          `[server killed] ${recorder.outcomes.length} calls; all: ${JSON.stringify(recorder.tally())}; ` +
            `while down: ${JSON.stringify(down)}; slowest failed call ${
              maxFailedMs.toFixed(1)
            } ms (bound ${BOUND_MS} ms); ` +
            `restart took ${(upAt - restartAt).toFixed(0)} ms; first success ${
              (recovered.end - upAt).toFixed(0)
            } ms after the new server listened`
        )
        expect(Object.keys(recorder.tally()).sort()).toEqual(["fail:ServiceUnavailable", "success"])
        expect(down["fail:ServiceUnavailable"]).toBeGreaterThan(8)
        expect(Object.keys(down)).toEqual(["fail:ServiceUnavailable"])
        expect(maxFailedMs).toBeLessThanOrEqual(BOUND_MS)
        expect(second.port).toBe(first.port)
      })),
    { timeout: 180_000 }
  )
})

describe("a client process that crashes holding slots", () => {
  it.live("loses them to the reclaim sweep within TTL + sweep", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer(serverArgs(0))
      const holder = yield* startWorker({
        role: "hold",
        door: "service",
        target: server.address,
        deadlineMs: DEADLINE_MS,
        leaseTtlMs: LEASE_TTL_MS,
        policy: pool("slots", 2),
        count: 2
      })
      const held = yield* holder.take("held", "90 seconds")
      expect(held["held"]).toHaveLength(2)
      const limiter = yield* clientOf(server.address)
      // The holder's heartbeat keeps them well past one TTL.
      yield* Effect.sleep(Duration.millis(LEASE_TTL_MS * 1.6))
      const refused = yield* Effect.scoped(limiter.admit("slots", "other"))
      expect(refused.held).toBe(false)
      expect(refused.bindingAxis).toBe("concurrency")

      yield* holder.kill("SIGKILL")
      const killedAt = performance.now()
      const freedAfter = yield* Effect.gen(function*() {
        const both = yield* Effect.scoped(
          Effect.map(
            Effect.forEach([1, 2], () => limiter.admit("slots", "other")),
            (admissions) => admissions.every((a) => a.held)
          )
        )
        if (!both) return yield* Effect.fail("still held")
        return performance.now() - killedAt
      }).pipe(Effect.retry(Schedule.spaced("25 millis")), Effect.timeout("15 seconds"))
      // The memory store reclaims on the next acquire after expiry (no timer); a sweep interval would add to
      // this, so the bound is TTL + one sweep (1 s) + slack.
      console.log(`[server leases] a crashed client's two slots were free ${freedAfter.toFixed(0)} ms after SIGKILL`)
      expect(freedAfter).toBeLessThanOrEqual(LEASE_TTL_MS + 1000 + SLACK_MS)
    })), { timeout: 180_000 })
})
