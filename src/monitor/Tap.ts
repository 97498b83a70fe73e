/**
 * The Monitor tap: a `RateLimiter` wrapper that records every decision the wrapped limiter makes into the
 * hub (`check`, `checkMany`, `admit` and the lease operations the server drives). Peek, forecast and debit
 * are not decisions of a tracked policy and pass through untouched.
 *
 * The tap adds no failure and no wait to a decision: the recording is synchronous bookkeeping plus a
 * publish to a sliding buffer, and a fault in it is swallowed. Failed calls (unknown policy, bad input,
 * store down) are not decisions and are not recorded.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { performance } from "node:perf_hooks"
import type { Admission } from "../Decision.js"
import { RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"
import { type Hub, MonitorHub } from "./Hub.js"

const sinceMs = (start: number): number => performance.now() - start

/**
 * Wraps `inner` so that its decisions are recorded into `hub`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrap = (inner: RateLimiterService, hub: Hub): RateLimiterService => {
  const recordAdmission = (policy: string, key: string, admission: Admission, latencyMs: number) =>
    hub.recordDecision(
      policy,
      key,
      admission.decision,
      latencyMs,
      admission.decision.allowed ? "" : admission.bindingAxis
    )

  const check: RateLimiterService["check"] = (policy, key, cost) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.tap(inner.check(policy, key, cost), (decision) =>
        hub.recordDecision(policy, key, decision, sinceMs(start), ""))
    })

  const checkMany: RateLimiterService["checkMany"] = (policy, keys, cost) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.tap(inner.checkMany(policy, keys, cost), (decisions) => {
        const latency = sinceMs(start)
        return Effect.forEach(
          decisions,
          (decision, i) => hub.recordDecision(policy, keys[i] ?? "", decision, latency, ""),
          { discard: true }
        )
      })
    })

  const admit: RateLimiterService["admit"] = (policy, key, options) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.tap(inner.admit(policy, key, options), (admission) =>
        Effect.zipRight(
          recordAdmission(policy, key, admission, sinceMs(start)),
          admission.held
            ? Effect.zipRight(
              Effect.flatMap(Clock.currentTimeMillis, (now) =>
                // A scoped admission ends with its scope, however long it is kept alive.
                Effect.sync(() => hub.slotHeld(policy, admission.leaseId, Number.POSITIVE_INFINITY, now))),
              Effect.addFinalizer(() => Effect.sync(() => hub.slotEnded(admission.leaseId)))
            )
            : Effect.void
        ))
    })

  const acquire: RateLimiterService["leases"]["acquire"] = (policy, key, options) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.tap(inner.leases.acquire(policy, key, options), (admission) =>
        Effect.zipRight(
          recordAdmission(policy, key, admission, sinceMs(start)),
          admission.held
            ? Effect.flatMap(
              Clock.currentTimeMillis,
              (now) => Effect.sync(() => hub.slotHeld(policy, admission.leaseId, admission.leaseExpiresAt, now))
            )
            : Effect.void
        ))
    })

  const release: RateLimiterService["leases"]["release"] = (leaseId, dropped) =>
    Effect.tap(inner.leases.release(leaseId, dropped), () => Effect.sync(() => hub.slotEnded(leaseId)))

  const heartbeat: RateLimiterService["leases"]["heartbeat"] = (leaseIds) =>
    Effect.tap(inner.leases.heartbeat(leaseIds), (result) =>
      Effect.sync(() => {
        hub.slotsRenewed(result.live, result.nextDeadline)
        for (const id of result.reclaimed) hub.slotEnded(id)
      }))

  return {
    ...inner,
    check,
    checkMany,
    admit,
    leases: { ttlMs: inner.leases.ttlMs, acquire, release, heartbeat }
  }
}

/**
 * The tap as a layer over the `RateLimiter` below it and a `MonitorHub`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RateLimiter, never, RateLimiter | MonitorHub> = Layer.effect(
  RateLimiter,
  Effect.zipWith(RateLimiter, MonitorHub, wrap)
)
