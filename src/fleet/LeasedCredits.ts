/**
 * Leased credits: a batch of a global budget held locally and spent without a round trip. This is the
 * one machine behind both tiers of fleet leasing:
 * - a server's `twoTier` / `federated` policy (tier 1) leases from the coordinator and answers `Check`
 *   from the credits;
 * - a client's `Fleet.leased` limiter (tier 2) leases through `Fleet.Reserve` and answers `check` locally.
 *
 * The hot path is plain synchronous code: read the clock, ask the `LeaseSpender` (CONTRACT.md §4).
 * Only when it answers "refresh needed" does `check` take the refresh lock and call `reserve`. The lock is
 * a `Semaphore(1)`, so however many fibers share the credits, at most one reservation is in flight; the
 * fibers queued behind it spend from the fresh grant first. Spends are synchronous, so two fibers never
 * spend the same credit.
 *
 * - Window coupling: credits die at the boundary of the window that granted them, and a grant for a new
 *   window starts from zero (leftover credits of an older window never carry into it, even when this
 *   process's clock lags the store's). Without it, leftovers carry over: the fleet bound is then
 *   `limit + holders × (batch − 1)` per window instead of `limit`.
 * - A refused grant (0 units) is the store's denial; it is remembered until its `retryAfterMs` so a flood
 *   of checks on an exhausted budget costs no further round trips.
 * - Background refresh (`lowWater > 0` with a `background` runner): once a spend leaves `lowWater` credits
 *   or fewer, one refresh of `batch` units is forked (it holds the same lock, so it is the only
 *   reservation in flight) and the check that crossed the threshold returns without waiting for its
 *   answer (with `makeBackground`, after sending the request). Checks keep spending what is left; a check
 *   the credits no longer cover waits for that refresh and gets its typed error if it fails. A failed background refresh changes no credits and switches background refresh off until a
 *   reservation succeeds again, so the next check that needs the store reserves in line and sees the
 *   store's answer. A grant that lands is adopted by the window rule above: leased for the window held, it
 *   adds (and dies with it, even when it lands after the boundary); for a newer window, it replaces the
 *   leftovers. The refresh fibers live in the runner's scope and are interrupted when it closes.
 *   Window-coupled, the fleet still admits at most `limit` per window; uncoupled, a holder may carry up to
 *   `lowWater + batch` credits into a new window instead of `batch`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
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
}

/**
 * Starts a background refresh at once and keeps its fiber in a scope that interrupts it on close.
 *
 * @since 0.1.0
 * @category models
 */
export type Background = (
  refresh: Effect.Effect<void, RateLimiterError>
) => Fiber.RuntimeFiber<void, RateLimiterError>

/**
 * A `Background` whose fibers live in a `FiberSet` of the current scope (interrupted when it closes). The
 * refreshes run on the runtime captured here, so they start synchronously inside the check that triggers
 * them: the reservation is on its way before that check returns.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBackground: Effect.Effect<Background, never, Scope.Scope> = Effect.map(
  FiberSet.makeRuntime<never, void, RateLimiterError>(),
  (run): Background => (refresh) => run(refresh)
)

/**
 * How often a check may refresh before giving up: a grant that is already dead when it arrives (this
 * process's clock ahead of the store's by more than a window) would otherwise loop.
 */
const MAX_REFRESHES = 4

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
  private readonly lock: Effect.Semaphore
  private readonly lowWater: number
  /** The background refresh in flight, if any. */
  private pending: Fiber.RuntimeFiber<void, RateLimiterError> | undefined = undefined
  /** A background refresh failed: none is started again until a reservation succeeds. */
  private backgroundHalted = false
  private readonly refreshInBackground: Effect.Effect<void, RateLimiterError>

  constructor(private readonly options: LeasedCreditsOptions, lock: Effect.Semaphore) {
    this.lock = lock
    this.limit = options.limit
    this.spender = this.freshSpender()
    this.lowWater = options.background === undefined ? 0 : Math.max(0, options.lowWater ?? 0)
    this.refreshInBackground = this.lock.withPermitsIfAvailable(1)(Effect.suspend(() => this.backgroundRefresh()))
      .pipe(Effect.asVoid)
  }

  /** The credits held now (not counting any that a window-coupled spend would discard). */
  get credits(): number {
    return this.spender.credits
  }

  /** The boundary of the latest grant (epoch-ms), or `undefined` before any grant. */
  get expiresAt(): number | undefined {
    return this.spender.expiresAt
  }

  /** True while a background refresh is in flight. */
  get refreshing(): boolean {
    return this.pending !== undefined
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

  /** Spends `cost` (a whole number ≥ 1, default 1): locally when the credits cover it, else after a refresh. */
  check(cost: number = 1): Effect.Effect<Decision, RateLimiterError> {
    const problem = Validate.costProblem(cost)
    if (problem !== undefined) return Effect.fail(new InvalidArgument({ argument: "cost", reason: problem }))
    return Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const local = this.spendLocally(now, cost)
      if (local === undefined) return this.refreshThenSpend(cost)
      if (this.lowWater > 0 && local.allowed && this.spender.credits <= this.lowWater) {
        this.startBackgroundRefresh(now)
      }
      return Effect.succeed(fromData(local))
    })
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

  /** Forks one background refresh unless one is in flight, has failed, or the store refused lately. */
  private startBackgroundRefresh(now: number): void {
    const background = this.options.background
    if (background === undefined || this.pending !== undefined || this.backgroundHalted) return
    if (this.refusal !== undefined && now < this.refusal.until) return
    // The fiber starts at once and may even finish before `background` returns (a synchronous store).
    const fiber = background(this.refreshInBackground)
    if (fiber.unsafePoll() !== null) return
    this.pending = fiber
    fiber.addObserver(() => {
      if (this.pending === fiber) this.pending = undefined
    })
  }

  /** The background refresh, run under the lock (skipped when a check's refresh holds it). */
  private backgroundRefresh(): Effect.Effect<void, RateLimiterError> {
    return Effect.flatMap(Clock.currentTimeMillis, (started) => {
      // A check's refresh may have landed since this one was asked for (with a deferred runner).
      if (this.spender.credits > this.lowWater) return Effect.void
      if (this.refusal !== undefined && started < this.refusal.until) return Effect.void
      return this.options.reserve(this.options.batch).pipe(
        Effect.flatMap((grant) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            if (grant.granted > 0) this.adopt(grant)
            else this.refuse(grant, now)
          })
        ),
        Effect.tapError((error) =>
          Effect.suspend(() => {
            this.backgroundHalted = true
            return Effect.logDebug(
              `background lease refresh of ${this.options.name} failed; the next check that needs the store ` +
                `reserves in line: ${error.message}`
            )
          })
        )
      )
    })
  }

  private refreshThenSpend(cost: number): Effect.Effect<Decision, RateLimiterError> {
    const pending = this.pending
    if (pending === undefined) return this.lock.withPermits(1)(Effect.suspend(() => this.refreshLoop(cost, 0)))
    // A background refresh is on its way: wait for it rather than reserving a second time.
    return Effect.flatMap(Fiber.await(pending), (exit) => {
      if (Exit.isSuccess(exit)) return this.lock.withPermits(1)(Effect.suspend(() => this.refreshLoop(cost, 0)))
      if (!Cause.isInterruptedOnly(exit.cause)) return Effect.failCause(exit.cause)
      return Effect.fail(
        new ServiceUnavailable({
          service: this.options.name,
          reason: "the background lease refresh was interrupted (the limiter is closing)"
        })
      )
    })
  }

  private refreshLoop(cost: number, attempt: number): Effect.Effect<Decision, RateLimiterError> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      // Another fiber may have refreshed while this one waited for the lock.
      const local = this.spendLocally(now, cost)
      if (local !== undefined) return Effect.succeed(fromData(local))
      if (attempt >= MAX_REFRESHES) {
        return Effect.fail(
          new ServiceUnavailable({
            service: this.options.name,
            reason: `${MAX_REFRESHES} grants in a row expired before they could be spent ` +
              "(is this process's clock ahead of the store's?)"
          })
        )
      }
      const wants = Math.max(this.options.batch, Math.ceil(cost - this.spender.credits))
      return Effect.flatMap(this.options.reserve(wants), (grant) => {
        if (grant.granted > 0) {
          this.adopt(grant)
          return this.refreshLoop(cost, attempt + 1)
        }
        return Effect.succeed(fromData(this.refuse(grant, now)))
      })
    })
  }
}

/**
 * Creates leased credits (empty: the first check reserves).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: LeasedCreditsOptions): Effect.Effect<LeasedCredits> =>
  Effect.map(Effect.makeSemaphore(1), (lock) => new LeasedCredits(options, lock))

/**
 * Creates leased credits outside Effect (the semaphore is created synchronously), for tables that add a
 * holder on a key's first check.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = (options: LeasedCreditsOptions): LeasedCredits =>
  new LeasedCredits(options, Effect.unsafeMakeSemaphore(1))
