/**
 * The Monitor tap: a store wrapper that records every decision the wrapped store makes into the hub
 * (`check` and `checkMany` of each limiter policy, and the admissions) and keeps the hub's in-flight
 * slots in step with the lease operations (acquire, release, heartbeat). Peek, forecast and debit are not
 * decisions of a tracked policy and pass through untouched.
 *
 * It sits under the front, so a scoped `admit` reaches it as what it is: an acquire, the keeper's
 * heartbeats (which renew the slot in the hub as they renew the lease) and a release. A lease the store
 * reclaims ends its slot when a heartbeat reports it, or when the hub sweeps past its expiry.
 *
 * The tap adds no failure and no wait to a decision: the recording is synchronous bookkeeping plus a
 * publish to a sliding buffer, and a fault in it is swallowed. Failed calls (unknown policy and bad input,
 * answered by the front before the store; store down) are not decisions and are not recorded.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { performance } from "node:perf_hooks"
import { type LocalStore, mapLocal, type RateLimiterStore, Store } from "../../services/RateLimiterStore.js"
import { type Hub, MonitorHub } from "./Hub.js"

const sinceMs = (start: number): number => performance.now() - start

/**
 * Wraps `inner` so that its decisions and held slots are recorded into `hub`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrap = (inner: LocalStore, hub: Hub): LocalStore => {
  if (inner.fleetGuards !== undefined) hub.observeFleetGuards(inner.fleetGuards)
  return tapped(inner, hub)
}

const tapped = (inner: LocalStore, hub: Hub): LocalStore =>
  mapLocal(inner, {
    limiter: (policy, bound) => {
      const name = policy.name
      return {
        ...bound,
        check: (key, cost) =>
          Effect.suspend(() => {
            const start = performance.now()
            return Effect.tap(
              bound.check(key, cost),
              (decision) => hub.recordDecision(name, key, decision, sinceMs(start), "")
            )
          }),
        checkMany: (keys, cost) =>
          Effect.suspend(() => {
            const start = performance.now()
            return Effect.tap(bound.checkMany(keys, cost), (decisions) => {
              const latency = sinceMs(start)
              return Effect.forEach(
                decisions,
                (decision, i) => hub.recordDecision(name, keys[i] ?? "", decision, latency, ""),
                { discard: true }
              )
            })
          })
      }
    },
    admitter: (policy, bound) => {
      const name = policy.name
      return {
        acquire: (key, options) =>
          Effect.suspend(() => {
            const start = performance.now()
            return Effect.tap(bound.acquire(key, options), (admission) =>
              Effect.zipRight(
                hub.recordDecision(
                  name,
                  key,
                  admission.decision,
                  sinceMs(start),
                  admission.decision.allowed ? "" : admission.bindingAxis
                ),
                admission.held
                  ? Effect.clockWith((clock) =>
                    Effect.sync(() =>
                      hub.slotHeld(name, admission.leaseId, admission.leaseExpiresAt, clock.unsafeCurrentTimeMillis())
                    )
                  )
                  : Effect.void
              ))
          })
      }
    },
    leases: (leases) => ({
      ttlMs: leases.ttlMs,
      release: (leaseId, dropped) =>
        Effect.tap(leases.release(leaseId, dropped), () => Effect.sync(() => hub.slotEnded(leaseId))),
      heartbeat: (leaseIds) =>
        Effect.tap(leases.heartbeat(leaseIds), (result) =>
          Effect.sync(() => {
            hub.slotsRenewed(result.live, result.nextDeadline)
            for (const id of result.reclaimed) hub.slotEnded(id)
          }))
    })
  })

/**
 * The tap as a layer over the `Store` below it and a `MonitorHub` (under the front). A remote store (the
 * Service door) passes through unchanged: its server keeps its own Monitor.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Store, never, Store | MonitorHub> = Layer.effect(
  Store,
  Effect.zipWith(Store, MonitorHub, (inner, hub): RateLimiterStore => inner._tag === "Local" ? wrap(inner, hub) : inner)
)
