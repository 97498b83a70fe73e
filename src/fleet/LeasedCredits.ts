/**
 * Leased credits: a batch of a global budget held locally and spent without a round trip. This is the
 * one machine behind both tiers of fleet leasing:
 * - a server's `twoTier` / `federated` policy (tier 1) leases from the coordinator and answers `Check`
 *   from the credits;
 * - a client's `Fleet.leased` limiter (tier 2) leases through `Fleet.Reserve` and answers `check` locally.
 *
 * The hot path is one Effect step of plain synchronous code: read the fiber's clock, ask the
 * `LeaseSpender` (CONTRACT.md §4). Only when it answers "refresh needed" does a check reach the store.
 * At most one reservation is in flight however many fibers share the credits (a plain "flight" record,
 * taken and landed synchronously, not a lock): a check that needs the store while one is in flight waits
 * for it, then spends from its grant first; with none in flight it reserves in its own fiber. Spends are
 * synchronous, so two fibers never spend the same credit. When a reservation fails, the checks waiting
 * for it get its typed error (one failed round trip answers them all, instead of each trying in turn).
 *
 * - Window coupling: credits die at the boundary of the window that granted them, and a grant for a new
 *   window starts from zero (leftover credits of an older window never carry into it, even when this
 *   process's clock lags the store's). Without it, leftovers carry over: the fleet bound is then
 *   `limit + holders × (batch − 1)` per window instead of `limit`.
 * - A refused grant (0 units) is the store's denial; it is remembered until its `retryAfterMs` so a flood
 *   of checks on an exhausted budget costs no further round trips.
 * - Background refresh (`lowWater > 0` with a `background` runner): once a spend leaves `lowWater` credits
 *   or fewer, one refresh of `batch` units is started (it is the reservation in flight) and the check that
 *   crossed the threshold returns without waiting for its answer (after sending the request). It runs in
 *   a fiber of the runner, or with `reserveCallback` (a store that can report through a callback) in no
 *   fiber at all. Checks keep spending what is left; a check the credits no longer cover waits for that
 *   refresh and gets its typed error if it fails. A failed background refresh changes no credits and
 *   switches background refresh off until a reservation succeeds again, so the next check that needs the
 *   store reserves in line and sees the store's answer. A grant that lands is adopted by the window rule
 *   above: leased for the window held, it adds (and dies with it, even when it lands after the boundary);
 *   for a newer window, it replaces the leftovers. The refresh fibers live in the runner's scope and are
 *   interrupted when it closes (a waiting check then fails with `ServiceUnavailable`); a callback refresh
 *   cannot be called back and lands when its answer comes. Window-coupled, the fleet still admits at most
 *   `limit` per window; uncoupled, a holder may carry up to `lowWater + batch` credits into a new window
 *   instead of `batch`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import { type Decision, type DecisionData, fromData } from "../Decision.js"
import { isDecision, LeaseSpender, type SpendResult } from "../engine/leaseSpender.js"
import { InvalidArgument, type RateLimiterError, ServiceUnavailable } from "../Errors.js"
import * as Validate from "../Validate.js"

/**
 * One reservation's answer: `granted` units (0 = refused) valid until `expiresAt`, and when refused how
 * long to wait.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseGrant {
  readonly granted: number
  readonly expiresAt: number
  readonly retryAfterMs: number
  /** The budget's per-window ceiling, when the answer says (a remote lease does). */
  readonly limit?: number
}

/**
 * How leased credits are sized and spent.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeasedCreditsOptions {
  /** The global per-window ceiling the decisions report (a grant that names another one wins). */
  readonly limit: number
  /** Units asked for per refresh (more when one check costs more). */
  readonly batch: number
  /** Discard credits at their window's end (the exact fleet bound). */
  readonly windowCoupled: boolean
  /** Asks the budget's owner for `wants` more units. */
  readonly reserve: (wants: number) => Effect.Effect<LeaseGrant, RateLimiterError>
  /** Names the budget in errors. */
  readonly name: string
  /**
   * Refresh in the background once a spend leaves this many credits or fewer (default 0: reserve only when
   * the credits run out). Takes effect only with `background`; meant to be below `batch`.
   */
  readonly lowWater?: number
  /** Starts background refreshes (see `makeBackground`). */
  readonly background?: Background
  /**
   * Starts a reservation outside any fiber and reports its outcome once through `done` (possibly at once).
   * `clock` is the clock of the check that started it. With it, background refreshes (which still need
   * `background`) cost no fiber; such a refresh cannot be interrupted: it lands when its answer comes.
   */
  readonly reserveCallback?: (
    wants: number,
    clock: Clock.Clock,
    done: (exit: Exit.Exit<LeaseGrant, RateLimiterError>) => void
  ) => void
}

/**
 * Starts a background reservation at once and keeps its fiber in a scope that interrupts it on close.
 *
 * @since 0.1.0
 * @category models
 */
export type Background = <A>(refresh: Effect.Effect<A, RateLimiterError>) => Fiber.RuntimeFiber<A, RateLimiterError>

/**
 * A `Background` whose fibers live in a `FiberSet` of the current scope (interrupted when it closes). The
 * refreshes run on the runtime captured here, so they start synchronously inside the check that triggers
 * them: the reservation is on its way before that check returns.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBackground: Effect.Effect<Background, never, Scope.Scope> = Effect.map(
  FiberSet.makeRuntime<never, unknown, RateLimiterError>(),
  (run): Background => (refresh) => run(refresh)
)

/**
 * How many reservations one check may make before giving up: a grant that is already dead when it arrives
 * (this process's clock ahead of the store's by more than a window) would otherwise loop.
 */
const MAX_REFRESHES = 4

/**
 * What a check waiting for a reservation is told when it settles: `undefined` (spend again) or why it
 * failed.
 */
type Waiter = (failure: Cause.Cause<RateLimiterError> | undefined) => void

/** The one reservation in flight, and the checks waiting for it. */
interface Flight {
  readonly background: boolean
  /** The clock of the check that started it: it reads the time the answer lands at. */
  readonly clock: Clock.Clock
  readonly waiters: Array<Waiter>
}

/**
 * A holder of leased credits.
 *
 * @since 0.1.0
 * @category models
 */
export class LeasedCredits {
  private spender: LeaseSpender
  private limit: number
  private refusal: { readonly until: number; readonly decision: DecisionData } | undefined = undefined
  private readonly lowWater: number
  /** The reservation in flight, if any (at most one, in line or in the background). */
  private flight: Flight | undefined = undefined
  /** A background refresh failed: none is started again until a reservation succeeds. */
  private backgroundHalted = false

  constructor(private readonly options: LeasedCreditsOptions) {
    this.limit = options.limit
    this.spender = this.freshSpender()
    this.lowWater = options.background === undefined ? 0 : Math.max(0, options.lowWater ?? 0)
  }

  /** The credits held now (not counting any that a window-coupled spend would discard). */
  get credits(): number {
    return this.spender.credits
  }

  /** The boundary of the latest grant (epoch-ms), or `undefined` before any grant. */
  get expiresAt(): number | undefined {
    return this.spender.expiresAt
  }

  /** True while a reservation is in flight (a background refresh, or one a check waits for). */
  get refreshing(): boolean {
    return this.flight !== undefined
  }

  /**
   * The local answer at `now`: an allow decision from the credits, the remembered refusal, or `undefined`
   * when a refresh is needed. Synchronous; `cost` must already be valid.
   */
  spendLocally(now: number, cost: number): DecisionData | undefined {
    const spent: SpendResult = this.spender.spend(now, cost)
    if (isDecision(spent)) return spent
    const refusal = this.refusal
    if (refusal !== undefined && now < refusal.until) {
      return { ...refusal.decision, retryAfterMs: Math.max(1, Math.ceil(refusal.until - now)) }
    }
    return undefined
  }

  /**
   * Spends `cost` (a whole number ≥ 1, default 1): locally when the credits cover it, else after a refresh.
   * The local answer is one Effect step: the fiber's clock is read in place.
   */
  check(cost: number = 1): Effect.Effect<Decision, RateLimiterError> {
    const problem = Validate.costProblem(cost)
    return problem === undefined
      ? this.checkValid(cost)
      : Effect.fail(new InvalidArgument({ argument: "cost", reason: problem }))
  }

  /** `check` for a caller that validated `cost` already (a whole number ≥ 1). */
  checkValid(cost: number): Effect.Effect<Decision, RateLimiterError> {
    return cost === 1 ? this.checkOne : Effect.withFiberRuntime((fiber) => this.spendNow(fiber, cost))
  }

  /** A check of one unit: one Effect value for every call (an Effect describes; running it spends). */
  private readonly checkOne: Effect.Effect<Decision, RateLimiterError> = Effect.withFiberRuntime((fiber) =>
    this.spendNow(fiber, 1)
  )

  /** The local spend at the fiber's clock, starting a background refresh at the mark. */
  private spendNow(fiber: Fiber.RuntimeFiber<Decision, RateLimiterError>, cost: number) {
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    const now = clock.unsafeCurrentTimeMillis()
    const local = this.spendLocally(now, cost)
    if (local === undefined) return this.fromStore(cost, 0, clock)
    if (this.lowWater > 0 && local.allowed && this.spender.credits <= this.lowWater) {
      this.startBackgroundRefresh(now, clock)
    }
    return Effect.succeed(fromData(local))
  }

  /** Spends again after a reservation landed (no background refresh from here: the caller waited). */
  private checkAgain(cost: number, reservations: number): Effect.Effect<Decision, RateLimiterError> {
    return Effect.withFiberRuntime((fiber) => {
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const local = this.spendLocally(clock.unsafeCurrentTimeMillis(), cost)
      return local === undefined ? this.fromStore(cost, reservations, clock) : Effect.succeed(fromData(local))
    })
  }

  /** The credits do not cover `cost`: wait for the reservation in flight, or make one. */
  private fromStore(
    cost: number,
    reservations: number,
    clock: Clock.Clock
  ): Effect.Effect<Decision, RateLimiterError> {
    const flight = this.flight
    if (flight !== undefined) return this.waitFor(flight, cost, reservations)
    if (reservations >= MAX_REFRESHES) {
      return Effect.fail(
        new ServiceUnavailable({
          service: this.options.name,
          reason: `${MAX_REFRESHES} grants in a row expired before they could be spent ` +
            "(is this process's clock ahead of the store's?)"
        })
      )
    }
    return this.reserveInLine(cost, reservations, clock)
  }

  /**
   * Waits for `flight` to land, then spends again (or fails as it failed). No canceler (it would wrap the
   * wait in an interruption handler): an interrupted check's waiter stays until the landing, whose call
   * its fiber ignores.
   */
  private waitFor(flight: Flight, cost: number, reservations: number): Effect.Effect<Decision, RateLimiterError> {
    return Effect.async<Decision, RateLimiterError>((resume) => {
      flight.waiters.push((failure) =>
        resume(failure === undefined ? this.checkAgain(cost, reservations) : Effect.failCause(failure))
      )
    })
  }

  /**
   * Reserves in this fiber. Taking off and landing happen outside interruption, so the flight always lands
   * and the checks waiting for it are always told; only the reservation itself can be interrupted.
   */
  private reserveInLine(cost: number, reservations: number, clock: Clock.Clock) {
    return Effect.uninterruptibleMask((restore) => {
      // Another fiber may have taken off since this one looked.
      const current = this.flight
      if (current !== undefined) return restore(this.waitFor(current, cost, reservations))
      const flight = this.takeOff(false, clock)
      const wants = Math.max(this.options.batch, Math.ceil(cost - this.spender.credits))
      return Effect.flatMap(Effect.exit(restore(this.options.reserve(wants))), (exit) => {
        const refused = this.land(flight, exit)
        if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
        return refused === undefined
          ? restore(this.checkAgain(cost, reservations + 1))
          : Effect.succeed(fromData(refused))
      })
    })
  }

  private takeOff(background: boolean, clock: Clock.Clock): Flight {
    const flight: Flight = { background, clock, waiters: [] }
    this.flight = flight
    return flight
  }

  /**
   * Adopts what a reservation answered and tells the checks waiting for it; returns the store's denial
   * when the grant was refused. An interrupted check's reservation lets its waiters try again; an
   * interrupted background refresh (the runner's scope closed) fails them.
   */
  private land(flight: Flight, exit: Exit.Exit<LeaseGrant, RateLimiterError>): DecisionData | undefined {
    if (this.flight === flight) this.flight = undefined
    let refused: DecisionData | undefined
    let failure: Cause.Cause<RateLimiterError> | undefined
    if (Exit.isSuccess(exit)) {
      const grant = exit.value
      if (grant.granted > 0) this.adopt(grant)
      else refused = this.refuse(grant, flight.clock.unsafeCurrentTimeMillis())
    } else if (!Cause.isInterruptedOnly(exit.cause)) {
      failure = exit.cause
      if (flight.background) this.backgroundFailed(exit.cause)
    } else if (flight.background) {
      failure = Cause.fail(
        new ServiceUnavailable({
          service: this.options.name,
          reason: "the background lease refresh was interrupted (the limiter is closing)"
        })
      )
    }
    for (const waiter of flight.waiters) waiter(failure)
    return refused
  }

  private freshSpender(): LeaseSpender {
    return new LeaseSpender({ limit: this.limit, ttlMs: 1000, windowCoupled: this.options.windowCoupled })
  }

  /** Adopts the ceiling a grant reports, keeping the credits held. */
  private adoptLimit(limit: number | undefined): void {
    if (limit === undefined || limit === this.limit) return
    this.limit = limit
    const old = this.spender
    this.spender = this.freshSpender()
    if (old.expiresAt !== undefined) this.spender.grant(old.credits, old.expiresAt)
  }

  private adopt(grant: LeaseGrant): void {
    this.adoptLimit(grant.limit)
    const held = this.spender.expiresAt
    if (this.options.windowCoupled && held !== undefined && held !== grant.expiresAt) {
      this.spender = this.freshSpender()
    }
    this.spender.grant(grant.granted, grant.expiresAt)
    this.refusal = undefined
    this.backgroundHalted = false
  }

  /** Remembers a refused grant until its retry time; answers with the store's denial. */
  private refuse(grant: LeaseGrant, now: number): DecisionData {
    this.adoptLimit(grant.limit)
    const decision = this.spender.refuse(grant.expiresAt, grant.retryAfterMs)
    if (grant.retryAfterMs > 0) this.refusal = { until: now + grant.retryAfterMs, decision }
    return decision
  }

  /** Switches background refresh off until a reservation succeeds, and says why (at debug level). */
  private backgroundFailed(cause: Cause.Cause<RateLimiterError>): void {
    this.backgroundHalted = true
    const background = this.options.background
    if (background === undefined) return
    background(
      Effect.logDebug(
        `background lease refresh of ${this.options.name} failed; the next check that needs the store ` +
          `reserves in line: ${Cause.pretty(cause)}`
      )
    )
  }

  /** Starts one background refresh unless one is in flight, has failed, or the store refused lately. */
  private startBackgroundRefresh(now: number, clock: Clock.Clock): void {
    const background = this.options.background
    if (background === undefined || this.flight !== undefined || this.backgroundHalted) return
    if (this.refusal !== undefined && now < this.refusal.until) return
    const flight = this.takeOff(true, clock)
    const start = this.options.reserveCallback
    if (start !== undefined) {
      start(this.options.batch, clock, (exit) => this.land(flight, exit))
      return
    }
    // The fiber starts at once and may even finish before `background` returns (a synchronous store): the
    // observer then runs at once.
    background(this.options.reserve(this.options.batch)).addObserver((exit) => this.land(flight, exit))
  }
}

/**
 * Creates leased credits (empty: the first check reserves).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: LeasedCreditsOptions): Effect.Effect<LeasedCredits> =>
  Effect.sync(() => new LeasedCredits(options))

/**
 * Creates leased credits outside Effect, for tables that add a holder on a key's first check.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = (options: LeasedCreditsOptions): LeasedCredits => new LeasedCredits(options)
