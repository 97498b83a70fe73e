/**
 * The admission keeper behind the front's scoped `admit`: acquire on entry, release on scope close (as
 * dropped when the scope closed by failure or interruption), and one batched heartbeat fiber per front
 * that renews every held lease, so a scoped admission holds its slot until its scope closes however
 * long that is. A lease the store reclaims anyway (its holder's process stalled past the TTL) is marked
 * on the admission and, when asked, interrupts its holder.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { type Admission, watchReclaimed } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"
import type { StoreLeases } from "../services/RateLimiterStore.js"

/**
 * Options of the keeper.
 *
 * @since 0.2.0
 */
export interface KeeperOptions {
  /** How often held leases are renewed (default: a third of the lease TTL, at least 10 ms). */
  readonly heartbeatIntervalMs?: number
}

/**
 * What a scoped admission asks of the keeper besides the acquire itself.
 *
 * @since 0.2.0
 */
export interface KeepOptions {
  /** Renew the lease while held (default true); false leaves a short hold to the lease TTL. */
  readonly keepAlive: boolean
  /** Interrupt the holding fiber if the store reclaims the lease anyway. */
  readonly interruptOnReclaim: boolean
  /** The admission's policy and key, named to `ReleaseSignal` when its slot is given back. */
  readonly policy: string
  readonly key: string
}

/**
 * Who hears that a held slot was given back (the front's waiting line for admissions).
 *
 * @since 0.3.0
 */
export interface ReleaseSignal {
  /** True while anyone listens (otherwise a release signals nothing and costs nothing more). */
  readonly waiting: () => boolean
  /** The slot of (policy, key) is free again. */
  readonly released: (policy: string, key: string) => void
}

interface KeptLease {
  reclaimed: boolean
  readonly holder: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

/**
 * Holds `acquire`'s admission for the life of the calling scope.
 *
 * @since 0.2.0
 */
export type Keep = (
  acquire: Effect.Effect<Admission, RateLimiterError>,
  options: KeepOptions
) => Effect.Effect<Admission, RateLimiterError, Scope.Scope>

/**
 * Builds the keeper over `leases`. Its heartbeat fiber lives in the surrounding scope (the front's), runs
 * only while leases are kept, and stops when that scope closes.
 *
 * @since 0.2.0
 */
export const makeKeeper = (
  leases: StoreLeases,
  options: KeeperOptions = {},
  signal?: ReleaseSignal
): Effect.Effect<Keep, never, Scope.Scope> =>
  Effect.gen(function*() {
    const kept = new Map<string, KeptLease>()
    const interval = Duration.millis(options.heartbeatIntervalMs ?? Math.max(10, Math.floor(leases.ttlMs / 3)))
    const scope = yield* Effect.scope
    let keeperRunning = false

    const markReclaimed = (ids: ReadonlyArray<string>) =>
      Effect.forEach(ids, (id) => {
        const lease = kept.get(id)
        if (lease === undefined) return Effect.void
        lease.reclaimed = true
        kept.delete(id)
        return lease.holder === undefined ? Effect.void : Fiber.interruptFork(lease.holder)
      }, { discard: true })

    /** One beat over every kept lease; answers how many remain kept (0 ends the keeper). */
    const beat: Effect.Effect<number> = Effect.suspend(() => {
      if (kept.size === 0) return Effect.succeed(0)
      return leases.heartbeat(Array.from(kept.keys())).pipe(
        Effect.flatMap((result) => markReclaimed(result.reclaimed)),
        Effect.catchAll((error) =>
          Effect.logWarning("admission heartbeat failed; will retry on the next beat").pipe(
            Effect.annotateLogs({ error: error.message, leases: kept.size })
          )
        ),
        Effect.map(() => kept.size)
      )
    }).pipe(Effect.tap((size) => {
      // Decided in the same step that read the size, so a lease kept after this sees no keeper and starts one.
      if (size === 0) keeperRunning = false
    }))

    // Runs only while leases are kept, so an idle front schedules nothing (and a TestClock jump does not
    // replay millions of idle beats).
    // The first input stands for the lease that started the keeper: wait one interval, then beat.
    const keeper = Effect.scheduleFrom(
      beat,
      1,
      Schedule.spaced(interval).pipe(Schedule.whileInput((size: number) => size > 0))
    ).pipe(Effect.interruptible, Effect.annotateLogs({ component: "admission-keeper" }))

    const keep = (admission: Admission, lease: KeptLease): Effect.Effect<Admission> => {
      kept.set(admission.leaseId, lease)
      const watched = watchReclaimed(admission, () => lease.reclaimed)
      if (keeperRunning) return Effect.succeed(watched)
      keeperRunning = true
      return Effect.as(Effect.forkIn(keeper, scope), watched)
    }

    const release = (admission: Admission, exit: Exit.Exit<unknown, unknown>, keepOptions: KeepOptions) => {
      if (!admission.held) return Effect.void
      const lease = kept.get(admission.leaseId)
      kept.delete(admission.leaseId)
      const listening = signal !== undefined && signal.waiting()
      if (lease !== undefined && lease.reclaimed) {
        // The store already freed the slot.
        if (listening) signal.released(keepOptions.policy, keepOptions.key)
        return Effect.void
      }
      const released = leases.release(admission.leaseId, Exit.isFailure(exit))
      // Signalled only once the store has the slot back, so the woken waiter finds it free. A line created
      // while this release is in flight is not signalled: its head's backoff covers that.
      return (listening ? Effect.tap(released, () => signal.released(keepOptions.policy, keepOptions.key)) : released)
        .pipe(
          Effect.catchAll((error) =>
            Effect.logWarning("admission release failed; the store reclaims the lease after its TTL").pipe(
              Effect.annotateLogs({ error: error.message })
            )
          )
        )
    }

    // The release is the scope's own finalizer (`Scope.addFinalizerExit`), not `Effect.acquireRelease`'s:
    // that one diffs and patches the fiber's FiberRefs around every release (tens of µs per admission),
    // for a release that needs none of them. The acquire and the finalizer's registration stay one
    // uninterruptible step, so a held slot always has its release in the scope.
    return (acquire, keepOptions) =>
      Effect.withFiberRuntime<Admission, RateLimiterError, Scope.Scope>((fiber) => {
        const holding = Context.unsafeGet(fiber.currentContext, Scope.Scope)
        return Effect.uninterruptible(Effect.flatMap(acquire, (acquired) => {
          const registered = Scope.addFinalizerExit(holding, (exit) => release(acquired, exit, keepOptions))
          return !acquired.held || !keepOptions.keepAlive
            ? Effect.as(registered, acquired)
            : Effect.zipRight(
              registered,
              keep(acquired, { reclaimed: false, holder: keepOptions.interruptOnReclaim ? fiber : undefined })
            )
        }))
      })
  })
