/**
 * The Redis door under real faults, against a private `redis-server` that the tests kill, restart, pause
 * and freeze while fibers keep calling: every call ends, with a value or `ServiceUnavailable`, within its
 * bound (the configured timeout plus a generous slack for a loaded CI machine: a correctness bound, not
 * a speed target); nothing becomes a defect or hangs; the backend recovers without help; admissions held
 * in Redis outlive the client that took them and are reclaimed after their TTL.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Logger, LogLevel, Metric, Schedule } from "effect"
import { Redis } from "ioredis"
import type { Decision } from "../../src/Decision.js"
import * as Metrics from "../../src/http/metrics.js"
import * as HttpRateLimit from "../../src/http/middleware.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { request, serve } from "../http/support.js"
import { redisServer, type RedisServerHandle } from "../support/redisServer.js"
import { eventually, fixedWindow, hammer, pool, Recorder, startWorker } from "./support.js"

/** The bound on every Redis call. */
const TIMEOUT_MS = 250
/** Room for a loaded machine (two cores shared by parallel test files, GC pauses). */
const SLACK_MS = 1000
const BOUND_MS = TIMEOUT_MS + SLACK_MS
/** The HTTP test asserts headers on every request while Redis is up, so it leaves more room there. */
const HTTP_TIMEOUT_MS = 1000

const window = fixedWindow("faults", 1_000_000_000, 3_600_000)

const failed = (o: { readonly ending: string }) => o.ending !== "success"

/** A RedisBackend over `redis`, built in the current scope. */
const backendOver = (redis: RedisServerHandle, options: Partial<RedisBackend.RedisBackendOptions> = {}) =>
  Effect.map(
    Layer.build(RedisBackend.layer({ policies: [window], redis: redis.url, timeoutMs: TIMEOUT_MS, ...options })),
    (context) => Context.get(context, RateLimiter)
  )

/** An admin connection of the test's own (not the backend's), closed with the scope. */
const adminOf = (redis: RedisServerHandle) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 })),
    (client) => Effect.sync(() => client.disconnect())
  )

/**
 * Runs `fibers` fibers of checks while `fault` runs; returns the recorder and the window during which the
 * fault was fully in force (recorder time). The load stops once a call succeeded after the fault ended.
 */
const underLoad = <E, R>(
  limiter: Context.Tag.Service<typeof RateLimiter>,
  fault: (recorder: Recorder<Decision>) => Effect.Effect<{ readonly from: number; readonly to: number }, E, R>
) =>
  Effect.gen(function*() {
    const recorder = new Recorder<Decision>()
    let stopping = false
    const load = yield* Effect.fork(
      hammer(recorder, 16, (fiber) => limiter.check(window.name, `k${fiber % 4}`), Effect.sync(() => stopping))
    )
    yield* eventually("calls to succeed before the fault", () => recorder.outcomes.length >= 50)
    const during = yield* fault(recorder)
    const over = recorder.now()
    yield* eventually(
      "a call to succeed after the fault, without help",
      () => recorder.outcomes.some((o) => o.start >= over && o.ending === "success"),
      "15 seconds"
    )
    const recoveredAfterMs = recorder.outcomes.find((o) => o.start >= over && o.ending === "success")!.end - over
    stopping = true
    // Nothing hangs: every fiber finishes its last call within the bound.
    yield* Fiber.join(load).pipe(Effect.timeout(Duration.millis(BOUND_MS * 2)))
    return { recorder, during, recoveredAfterMs }
  })

describe("Redis faults under load", () => {
  it.live(
    "killed and restarted: calls in between are ServiceUnavailable within the bound; it recovers itself",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const limiter = yield* backendOver(redis)
        const { during, recorder, recoveredAfterMs } = yield* underLoad(limiter, (recorder) =>
          Effect.gen(function*() {
            yield* Effect.promise(() => redis.stop())
            const from = recorder.now()
            yield* Effect.sleep("1500 millis")
            const to = recorder.now()
            yield* Effect.promise(() => redis.start())
            return { from, to }
          }))

        const inOutage = (o: { readonly start: number; readonly end: number }) =>
          o.start >= during.from && o.end <= during.to
        const outage = recorder.tally(inOutage)
        const maxFailedMs = recorder.maxLatency(failed)
        console.log(
          `[redis killed] ${recorder.outcomes.length} calls; all: ${JSON.stringify(recorder.tally())}; ` +
            `during the outage: ${JSON.stringify(outage)}; slowest failed call ${maxFailedMs.toFixed(1)} ms ` +
            `(bound ${BOUND_MS} ms); first success ${recoveredAfterMs.toFixed(0)} ms after the restart`
        )
        expect(Object.keys(recorder.tally()).sort()).toEqual(["fail:ServiceUnavailable", "success"])
        expect(outage["fail:ServiceUnavailable"]).toBeGreaterThan(100)
        expect(Object.keys(outage)).toEqual(["fail:ServiceUnavailable"])
        expect(maxFailedMs).toBeLessThanOrEqual(BOUND_MS)
      })),
    { timeout: 60_000 }
  )

  it.live(
    "paused (CLIENT PAUSE): deadlines fire with ServiceUnavailable, then calls flow again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const limiter = yield* backendOver(redis)
        const admin = yield* adminOf(redis)
        const { during, recorder } = yield* underLoad(limiter, (recorder) =>
          Effect.gen(function*() {
            const from = recorder.now()
            yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "1500", "ALL"))
            yield* Effect.sleep("1500 millis")
            return { from, to: recorder.now() - 100 }
          }))

        const stalled = recorder.outcomes.filter((o) => o.start >= during.from + 50 && o.end <= during.to)
        const maxFailedMs = recorder.maxLatency(failed)
        console.log(
          `[redis paused] ${recorder.outcomes.length} calls; all: ${JSON.stringify(recorder.tally())}; ` +
            `${stalled.length} stalled calls; slowest failed call ${maxFailedMs.toFixed(1)} ms (bound ${BOUND_MS} ms)`
        )
        expect(Object.keys(recorder.tally()).sort()).toEqual(["fail:ServiceUnavailable", "success"])
        expect(stalled.length).toBeGreaterThan(16)
        for (const call of stalled) {
          expect(call.ending).toBe("fail:ServiceUnavailable")
          // The script runner's bound or ioredis's command timeout (the same `timeoutMs`), whichever fires first.
          expect(call.error?.message).toMatch(new RegExp(`no answer within ${TIMEOUT_MS} ms|Command timed out`))
        }
        expect(maxFailedMs).toBeLessThanOrEqual(BOUND_MS)
      })),
    { timeout: 60_000 }
  )

  it.live(
    "frozen (SIGSTOP) then thawed: deadlines fire, none hangs, then calls flow again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const limiter = yield* backendOver(redis)
        const admin = yield* adminOf(redis)
        const info = yield* Effect.promise(() => admin.info("server"))
        const pid = Number(/process_id:(\d+)/.exec(info)?.[1])
        expect(pid).toBeGreaterThan(0)
        const { during, recorder } = yield* underLoad(limiter, (recorder) =>
          Effect.acquireUseRelease(
            Effect.sync(() => process.kill(pid, "SIGSTOP")),
            () =>
              Effect.gen(function*() {
                const from = recorder.now()
                yield* Effect.sleep("1500 millis")
                return { from, to: recorder.now() }
              }),
            () => Effect.sync(() => process.kill(pid, "SIGCONT"))
          ))

        const frozen = recorder.outcomes.filter((o) => o.start >= during.from && o.end <= during.to)
        const maxFailedMs = recorder.maxLatency(failed)
        console.log(
          `[redis frozen] ${recorder.outcomes.length} calls; all: ${JSON.stringify(recorder.tally())}; ` +
            `${frozen.length} calls while frozen; slowest failed call ${
              maxFailedMs.toFixed(1)
            } ms (bound ${BOUND_MS} ms)`
        )
        expect(Object.keys(recorder.tally()).sort()).toEqual(["fail:ServiceUnavailable", "success"])
        expect(frozen.length).toBeGreaterThan(16)
        expect(frozen.every((o) => o.ending === "fail:ServiceUnavailable")).toBe(true)
        expect(maxFailedMs).toBeLessThanOrEqual(BOUND_MS)
      })),
    { timeout: 60_000 }
  )

  it.live("a backend built while Redis is down fails with ServiceUnavailable within its connect bound", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* redisServer
      yield* Effect.promise(() => redis.stop())
      const started = performance.now()
      const error = yield* Effect.flip(Effect.scoped(backendOver(redis)))
      const elapsed = performance.now() - started
      expect(error._tag).toBe("ServiceUnavailable")
      // The connect bound is max(timeout, 1000 ms).
      expect(elapsed).toBeLessThanOrEqual(1000 + SLACK_MS)
    })))
})

describe("HTTP fail modes under load while Redis is down", () => {
  it.live(
    "fail open lets every request through, fail closed answers 503 to every one, each within the bound",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const redis = yield* redisServer
          const open = fixedWindow("http-open", 1000, 3_600_000)
          const closed = fixedWindow("http-closed", 1000, 3_600_000)
          const context = yield* Layer.build(
            RedisBackend.layer({ policies: [open, closed], redis: redis.url, timeoutMs: HTTP_TIMEOUT_MS })
          )
          const [failOpen, failClosed] = yield* Effect.all([
            HttpRateLimit.make({ policy: open, failMode: "open" }),
            HttpRateLimit.make({ policy: closed, failMode: "closed" })
          ]).pipe(Effect.provide(context))
          let handled = 0
          const app = HttpRouter.empty.pipe(
            HttpRouter.get("/", Effect.sync(() => (handled++, HttpServerResponse.text("ok"))))
          )
          const openUrl = yield* serve(app.pipe(failOpen))
          const closedUrl = yield* serve(app.pipe(failClosed))

          const burst = (url: string) =>
            Effect.forEach(
              Array.from({ length: 40 }),
              () =>
                Effect.map(
                  Effect.timed(request(url)),
                  ([elapsed, reply]) => ({ ms: Duration.toMillis(elapsed), reply })
                ),
              {
                concurrency: 20
              }
            )

          // Warm up (the first call loads the scripts into Redis), then a burst while Redis is up.
          expect((yield* request(openUrl)).status).toBe(200)
          expect((yield* request(closedUrl)).status).toBe(200)
          const up = yield* burst(openUrl)
          expect(up.every((r) => r.reply.status === 200 && r.reply.headers.get("ratelimit") !== null)).toBe(true)

          yield* Effect.promise(() => redis.stop())
          const handledBefore = handled
          const [downOpen, downClosed] = yield* Effect.all([burst(openUrl), burst(closedUrl)], { concurrency: 2 })
          const slowestRequest = Math.max(...[...downOpen, ...downClosed].map((r) => r.ms))
          // The decisions themselves (the backend call inside the middleware) are bounded by the timeout; the
          // HTTP round trip around them only has to end.
          const decisionMax = yield* Effect.map(
            Effect.all(
              [open, closed].map((p) => Metric.value(Metrics.decisionLatency.pipe(Metric.tagged("policy", p.name))))
            ),
            (states) => Math.max(...states.map((state) => state.max))
          )
          console.log(
            `[http fail modes] open: ${downOpen.filter((r) => r.reply.status === 200).length}/40 served, ` +
              `closed: ${downClosed.filter((r) => r.reply.status === 503).length}/40 refused; slowest decision ${
                decisionMax.toFixed(1)
              } ms (bound ${HTTP_TIMEOUT_MS + SLACK_MS} ms), slowest request ${slowestRequest.toFixed(0)} ms`
          )
          expect(downOpen.map((r) => r.reply.status)).toEqual(Array(40).fill(200))
          expect(downOpen.every((r) => r.reply.headers.get("ratelimit") === null)).toBe(true)
          expect(downClosed.map((r) => r.reply.status)).toEqual(Array(40).fill(503))
          // Only the fail-open requests reached the handler.
          expect(handled - handledBefore).toBe(40)
          expect(decisionMax).toBeLessThanOrEqual(HTTP_TIMEOUT_MS + SLACK_MS)
          expect(slowestRequest).toBeLessThan(10_000)

          yield* Effect.promise(() => redis.start())
          yield* Effect.gen(function*() {
            const again = yield* request(closedUrl)
            if (again.status !== 200) return yield* Effect.fail(`still ${again.status}`)
            expect(again.headers.get("ratelimit")).not.toBeNull()
          }).pipe(Effect.retry(Schedule.spaced("50 millis")), Effect.timeout("15 seconds"))
          // One fail-open/closed warning per request is the middleware's business; keep the output readable.
        }).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Error)))
      ),
    { timeout: 60_000 }
  )
})

describe("admissions held in Redis", () => {
  const slots = pool("slots", 2)
  const TTL_MS = 2000

  it.live(
    "outlive the client that took them, and are reclaimed after their TTL",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const options = { policies: [slots], redis: redis.url, timeoutMs: TIMEOUT_MS, leaseTtlMs: TTL_MS }
        // A client takes both slots and goes away without releasing them (raw leases, no scope).
        let takenAt = 0
        const taken = yield* Effect.flatMap(RateLimiter, (limiter) => {
          takenAt = performance.now()
          return Effect.forEach([1, 2], () => limiter.leases.acquire(slots.name, "first"))
        }).pipe(Effect.provide(RedisBackend.layer(options)))
        expect(taken.map((a) => a.held)).toEqual([true, true])

        // A new client (a restarted process) sees them held.
        const limiter = Context.get(yield* Layer.build(RedisBackend.layer(options)), RateLimiter)
        const refused = yield* Effect.scoped(limiter.admit(slots.name, "second"))
        expect(performance.now() - takenAt).toBeLessThan(TTL_MS)
        expect(refused.held).toBe(false)
        expect(refused.bindingAxis).toBe("concurrency")

        // After the TTL both are reclaimed: the new client can hold two at once.
        const reclaimedAfter = yield* Effect.gen(function*() {
          const both = yield* Effect.scoped(
            Effect.forEach([1, 2], () => limiter.admit(slots.name, "second")).pipe(
              Effect.map((admissions) => admissions.every((a) => a.held))
            )
          )
          if (!both) return yield* Effect.fail("still held")
          return performance.now() - takenAt
        }).pipe(Effect.retry(Schedule.spaced("25 millis")), Effect.timeout("10 seconds"))
        console.log(`[redis leases] reclaimed ${reclaimedAfter.toFixed(0)} ms after they were taken (TTL ${TTL_MS} ms)`)
        expect(reclaimedAfter).toBeGreaterThanOrEqual(TTL_MS)
        expect(reclaimedAfter).toBeLessThanOrEqual(TTL_MS + SLACK_MS)

        // A stale id released late does not free a slot someone else now holds.
        yield* Effect.scoped(Effect.gen(function*() {
          const now = yield* Effect.forEach([1, 2], () => limiter.admit(slots.name, "third"))
          expect(now.every((a) => a.held)).toBe(true)
          yield* limiter.leases.release(taken[0]!.leaseId, false)
          expect((yield* Effect.scoped(limiter.admit(slots.name, "fourth"))).held).toBe(false)
        }))
      })),
    { timeout: 30_000 }
  )

  it.live(
    "a client process that crashes holding slots loses them within TTL + slack",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const holder = yield* startWorker({
          role: "hold",
          door: "redis",
          url: redis.url,
          timeoutMs: TIMEOUT_MS,
          leaseTtlMs: TTL_MS,
          policy: slots,
          count: 2
        })
        const held = yield* holder.take("held")
        expect(held["held"]).toHaveLength(2)
        const limiter = Context.get(
          yield* Layer.build(RedisBackend.layer({ policies: [slots], redis: redis.url, leaseTtlMs: TTL_MS })),
          RateLimiter
        )
        // Kept alive by the holder's heartbeat well past one TTL.
        yield* Effect.sleep(Duration.millis(TTL_MS * 1.6))
        expect((yield* Effect.scoped(limiter.admit(slots.name, "other"))).held).toBe(false)

        yield* holder.kill("SIGKILL")
        const killedAt = performance.now()
        const freedAfter = yield* Effect.gen(function*() {
          const admission = yield* Effect.scoped(limiter.admit(slots.name, "other"))
          if (!admission.held) return yield* Effect.fail("still held")
          return performance.now() - killedAt
        }).pipe(Effect.retry(Schedule.spaced("25 millis")), Effect.timeout("10 seconds"))
        console.log(`[redis leases] a crashed holder's slots were free ${freedAfter.toFixed(0)} ms after SIGKILL`)
        expect(freedAfter).toBeLessThanOrEqual(TTL_MS + SLACK_MS)
      })),
    { timeout: 60_000 }
  )
})
