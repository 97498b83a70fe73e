/**
 * The scoped `admit` every backend shares, built from its lease operations: acquire on entry, release
 * on scope close (as dropped when the scope closed by failure or interruption), and one batched
 * heartbeat fiber per backend that renews every kept-alive lease and marks the ones it learns were
 * reclaimed (optionally interrupting their holders).
 *
 * @since 0.1.0
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import { type Admission, watchReclaimed } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"
import type { AdmitOptions, Leases } from "../services/RateLimiter.js"

/**
 * Options of the admission keeper.
 *
 * @since 0.1.0
 * @internal
 */
export interface KeeperOptions {
  /** How often kept-alive leases are renewed (default: half the lease TTL, at least 10 ms). */
  readonly heartbeatIntervalMs?: number
}

interface KeptLease {
  reclaimed: boolean
  readonly holder: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

/**
 * The type of a scoped `admit`.
 *
 * @since 0.1.0
 * @internal
 */
export type Admit = (
  policy: string,
  key: string,
  options?: AdmitOptions
) => Effect.Effect<Admission, RateLimiterError, Scope.Scope>

/**
 * Builds the scoped `admit` over `leases`. The heartbeat fiber lives in the surrounding scope (the
 * backend layer's), so it stops when the backend is released.
 *
 * @since 0.1.0
 * @internal
 */
export const makeAdmit = (leases: Leases, options: KeeperOptions = {}): Effect.Effect<Admit, never, Scope.Scope> =>
  Effect.gen(function*() {
    const kept = new Map<string, KeptLease>()
    const intervalMs = options.heartbeatIntervalMs ?? Math.max(10, Math.floor(leases.ttlMs / 2))

    const markReclaimed = (ids: ReadonlyArray<string>) =>
      Effect.forEach(ids, (id) => {
        const lease = kept.get(id)
        if (lease === undefined) return Effect.void
        lease.reclaimed = true
        kept.delete(id)
        return lease.holder === undefined ? Effect.void : Fiber.interruptFork(lease.holder)
      }, { discard: true })

    const beat = Effect.suspend(() => {
      if (kept.size === 0) return Effect.void
      return leases.heartbeat(Array.from(kept.keys())).pipe(
        Effect.flatMap((result) => markReclaimed(result.reclaimed)),
        Effect.catchAll((error) =>
          Effect.logWarning("admission heartbeat failed; will retry on the next beat").pipe(
            Effect.annotateLogs({ error: error.message, leases: kept.size })
          )
        )
      )
    })

    // The keeper runs only while kept-alive leases exist, so an idle backend schedules nothing (and a
    // TestClock jump does not replay millions of idle beats).
    const scope = yield* Effect.scope
    let keeperRunning = false
    const keeper = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Duration.millis(intervalMs))
        yield* beat
        if (kept.size === 0) {
          keeperRunning = false
          return
        }
      }
    }).pipe(Effect.interruptible, Effect.annotateLogs({ component: "admission-keeper" }))

    const keep = (admission: Admission, lease: KeptLease): Effect.Effect<Admission> => {
      kept.set(admission.leaseId, lease)
      const watched = watchReclaimed(admission, () => lease.reclaimed)
      if (keeperRunning) return Effect.succeed(watched)
      keeperRunning = true
      return Effect.as(Effect.forkIn(keeper, scope), watched)
    }

    const release = (admission: Admission, exit: Exit.Exit<unknown, unknown>) => {
      if (!admission.held) return Effect.void
      const lease = kept.get(admission.leaseId)
      kept.delete(admission.leaseId)
      if (lease !== undefined && lease.reclaimed) return Effect.void
      return leases.release(admission.leaseId, Exit.isFailure(exit)).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("admission release failed; the backend reclaims the lease after its TTL").pipe(
            Effect.annotateLogs({ error: error.message })
          )
        )
      )
    }

    return (policy, key, admitOptions = {}) =>
      Effect.withFiberRuntime<Admission, RateLimiterError, Scope.Scope>((fiber) =>
        Effect.acquireRelease(
          Effect.flatMap(
            leases.acquire(policy, key, {
              ...(admitOptions.cost === undefined ? {} : { cost: admitOptions.cost }),
              ...(admitOptions.hold === undefined ? {} : { hold: admitOptions.hold }),
              ...(admitOptions.value === undefined ? {} : { value: admitOptions.value })
            }),
            (admission) =>
              !admission.held || admitOptions.keepAlive !== true
                ? Effect.succeed(admission)
                : keep(admission, {
                  reclaimed: false,
                  holder: admitOptions.interruptOnReclaim === true ? fiber : undefined
                })
          ),
          release
        )
      )
  })
