/**
 * Shaping: instead of denying a call over the rate, delay it until its turn. A shaper is a leaky bucket
 * per key: calls leave at `ratePerSec`, each reserving the next departure instant, and a call waits for
 * its instant ("go now" or "go after N ms") unless the queue ahead of it is longer than `maxQueueMs`,
 * when it is refused (`RateLimited`, with the wait after which the queue is short enough). For smoothing
 * calls to a third-party API: `shaped(shaper, key)` delays the effect it wraps.
 *
 * The `Shaper` service has one implementation, the front (`make`), over a store: in-process
 * (`MemoryShaper`, Effect's `Clock`, so `TestClock` drives it) or fleet-wide (`RedisShaper`, one
 * departure per key in Redis, so every process shares one rate). It validates every call first (the
 * shaper's name, then the key, then the cost), before any state is touched.
 *
 * A shaper is not a `RateLimiter` policy: the ThrottleKit contract has no operation that answers "go
 * after N ms" and keeps the instant reserved, so the gRPC server does not serve shapers and the Service
 * door has none (shape on Redis to share a rate between processes).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryShaper, shaped } from "throttlekit-effect"
 *
 * // At most 5 calls a second to the partner API; a call waits up to 2 s for its turn, else fails.
 * const callPartner = (id: number) => Effect.succeed(`sent ${id}`).pipe(shaped("partner", "global"))
 *
 * const shapers = MemoryShaper.layer({
 *   shapers: [{ name: "partner", prefix: "partner", ratePerSec: 5, maxQueueMs: 2000, maxKeys: 1000 }]
 * })
 *
 * // The three calls leave 200 ms apart: at 0, 200 and 400 ms.
 * Effect.runPromise(Effect.forEach([1, 2, 3], callPartner, { concurrency: 3 }).pipe(Effect.provide(shapers)))
 *   .then(console.log) // [ "sent 1", "sent 2", "sent 3" ]
 * ```
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Decision } from "../Decision.js"
import { allow, deny } from "../engine/internal.js"
import type { Outcome } from "../engine/shaper.js"
import { type BackendError, InvalidArgument, PolicyNotFound, RateLimited, type ServiceUnavailable } from "../Errors.js"
import { MAX_HORIZON_MS } from "../Policy.js"
import * as Validate from "../Validate.js"

/**
 * A shaper: per key, `ratePerSec` units leave per second, and a call waits at most `maxQueueMs` for its
 * turn. The state of a key is stored under `prefix:key` (`key` alone when the prefix is empty); at most
 * `maxKeys` keys are kept in memory (only keys whose queue is empty are ever forgotten).
 *
 * @since 0.3.0
 * @category models
 */
export const ShaperPolicy = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1)),
  prefix: Schema.String,
  // At least one unit per ~11.6 days, as a token bucket's refill: T stays within exact arithmetic.
  ratePerSec: Schema.Number.pipe(Schema.finite(), Schema.greaterThanOrEqualTo(1e-6)),
  maxQueueMs: Schema.Int.pipe(Schema.between(0, MAX_HORIZON_MS)),
  maxKeys: Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER))
})

/**
 * @since 0.3.0
 * @category models
 */
export type ShaperPolicy = typeof ShaperPolicy.Type

/**
 * A reservation: accepted (the call goes after `delayMs`, its instants kept for it) or refused. Its
 * `decision` says the same as a `Decision`: `allowed`, the queue's `limit` (cost-1 calls an empty queue
 * accepts at one instant), the cost-1 calls still accepted now (`remaining`), when the queue is empty
 * (`resetAt`) and, when refused, the wait until it is short enough (`retryAfterMs`).
 *
 * @since 0.3.0
 * @category models
 */
export interface Reservation {
  readonly shaper: string
  readonly key: string
  readonly cost: number
  readonly accepted: boolean
  /** The wait before the call may go (0 when refused). */
  readonly delayMs: number
  readonly decision: Decision
  /** The reserved departure instants (store clock, exact), for giving the reservation back. */
  readonly start: number
  readonly end: number
}

/**
 * The reservation of `outcome` for `cost` units of `key` on `shaper`, as a store reports it.
 *
 * @since 0.3.0
 * @category constructors
 * @internal
 */
export const reservationOf = (shaper: string, key: string, cost: number, outcome: Outcome): Reservation => ({
  shaper,
  key,
  cost,
  accepted: outcome.accepted,
  delayMs: outcome.delayMs,
  decision: outcome.accepted
    ? allow(outcome.limit, outcome.remaining, Math.ceil(outcome.end))
    : deny(outcome.limit, 0, Math.ceil(outcome.start), outcome.retryAfterMs),
  start: outcome.start,
  end: outcome.end
})

/**
 * Every fault a shaper call can fail with.
 *
 * @since 0.3.0
 * @category errors
 */
export type ShaperError = PolicyNotFound | InvalidArgument | ServiceUnavailable | BackendError

/**
 * A store's operations on one shaper, on arguments the front checked.
 *
 * @since 0.3.0
 * @category models
 */
export interface BoundShaper {
  /** Reserves `cost` units for `key`: accepted with its delay, or refused. */
  readonly reserve: (key: string, cost: number) => Effect.Effect<Reservation, ShaperError>
  /** Gives an accepted reservation back when no later one was made on its key; whether it was. */
  readonly giveBack: (reservation: Reservation) => Effect.Effect<boolean, ShaperError>
}

/**
 * A shaper store: where the departures live (`MemoryShaper`, `RedisShaper`).
 *
 * @since 0.3.0
 * @category models
 */
export interface ShaperStore {
  /** Names the store in logs and errors ("memory", "redis"). */
  readonly backend: string
  readonly shapers: ReadonlyArray<ShaperPolicy>
  readonly bind: (shaper: ShaperPolicy) => BoundShaper
}

/**
 * The service interface.
 *
 * @since 0.3.0
 * @category models
 */
export interface ShaperService {
  readonly backend: string
  /**
   * Reserves `cost` (default 1) units of `key`'s rate on `shaper`: the call may go after
   * `delayMs`, or is refused (its queue too long). Fails with `PolicyNotFound` for an unknown shaper and
   * `InvalidArgument` for a bad key or cost, changing nothing.
   */
  readonly reserve: (shaper: string, key: string, cost?: number) => Effect.Effect<Reservation, ShaperError>
  /**
   * Gives an accepted reservation back (its call will not go): the next call takes its instant when no
   * later reservation was made on the key; otherwise nothing changes. Whether it was given back.
   */
  readonly giveBack: (reservation: Reservation) => Effect.Effect<boolean, ShaperError>
}

/**
 * The `Shaper` tag. Provide it with `MemoryShaper.layer` or `RedisShaper.layer`.
 *
 * @since 0.3.0
 * @category tags
 */
export class Shaper extends Context.Tag("throttlekit-effect/Shaper")<Shaper, ShaperService>() {}

/** The most units one reservation may take: their span stays within `MAX_HORIZON_MS`. */
const maxCostOf = (shaper: ShaperPolicy): number =>
  Math.min(Number.MAX_SAFE_INTEGER, Math.floor(MAX_HORIZON_MS / (1000 / shaper.ratePerSec)))

/**
 * The front over `store`: the only implementation of `ShaperService`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (store: ShaperStore): ShaperService => {
  const bound = new Map<string, { readonly ops: BoundShaper; readonly most: number }>()
  for (const shaper of store.shapers) bound.set(shaper.name, { ops: store.bind(shaper), most: maxCostOf(shaper) })
  const names = store.shapers.map((shaper) => shaper.name)
  const invalid = (argument: string, reason: string) => Effect.fail(new InvalidArgument({ argument, reason }))

  const reserve: ShaperService["reserve"] = (shaper, key, cost = 1) => {
    const found = bound.get(shaper)
    if (found === undefined) {
      const tooLong = Validate.policyNameProblem(shaper)
      return tooLong === undefined
        ? Effect.fail(new PolicyNotFound({ policy: shaper, configured: names }))
        : invalid("shaper", tooLong)
    }
    const keyProblem = Validate.keyProblem(key)
    if (keyProblem !== undefined) return invalid("key", keyProblem)
    const costProblem = Validate.costProblem(cost)
    if (costProblem !== undefined) return invalid("cost", costProblem)
    if (cost > found.most) return invalid("cost", `must be at most ${found.most} for this shaper, got ${cost}`)
    return found.ops.reserve(key, cost)
  }

  const giveBack: ShaperService["giveBack"] = (reservation) => {
    const found = bound.get(reservation.shaper)
    return found === undefined || !reservation.accepted ? Effect.succeed(false) : found.ops.giveBack(reservation)
  }

  return { backend: store.backend, reserve, giveBack }
}

/**
 * Options of `shaped`.
 *
 * @since 0.3.0
 * @category models
 */
export interface ShapedOptions {
  /** Units the call takes (default 1): it holds the rate `cost` times as long. */
  readonly cost?: number
}

/**
 * Runs `self` at its turn on `shaper` for `key`: reserves the next departure, waits for it
 * (`Effect.sleep`, so `TestClock` drives it), then runs `self`. A call whose queue is longer than the
 * shaper's `maxQueueMs` fails with `RateLimited` (its decision's `retryAfterMs` says when the queue is
 * short enough) and `self` never runs. Interrupted while it waits, the call gives its reservation back
 * (exactly, when no later call reserved on the key since; otherwise its instant stays unused).
 *
 * @since 0.3.0
 * @category combinators
 */
export const shaped: {
  (shaper: string, key: string, options?: ShapedOptions): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RateLimited | ShaperError, R | Shaper>
} = (shaper, key, options) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Shaper, (shapers) =>
    // The reservation and the interruption handler are set up uninterruptibly: an interruption between
    // the reservation and the wait still gives the instant back.
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        shapers.reserve(shaper, key, options?.cost),
        (reservation): Effect.Effect<A, E | RateLimited | ShaperError, R> => {
          if (!reservation.accepted) {
            return Effect.fail(new RateLimited({ policy: shaper, key, decision: reservation.decision }))
          }
          const wait = Effect.onInterrupt(
            restore(reservation.delayMs === 0 ? Effect.void : Effect.sleep(Duration.millis(reservation.delayMs))),
            () => Effect.ignore(shapers.giveBack(reservation))
          )
          return Effect.zipRight(wait, restore(self))
        }
      )
    ))
