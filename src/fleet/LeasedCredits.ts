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
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
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
}

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

  constructor(private readonly options: LeasedCreditsOptions, lock: Effect.Semaphore) {
    this.lock = lock
    this.limit = options.limit
    this.spender = this.freshSpender()
  }

  /** The credits held now (not counting any that a window-coupled spend would discard). */
  get credits(): number {
    return this.spender.credits
  }

  /** The boundary of the latest grant (epoch-ms), or `undefined` before any grant. */
  get expiresAt(): number | undefined {
    return this.spender.expiresAt
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
      const local = this.spendLocally(clock.unsafeCurrentTimeMillis(), cost)
      return local !== undefined ? Effect.succeed(fromData(local)) : this.refreshThenSpend(cost)
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
  }

  private refreshThenSpend(cost: number): Effect.Effect<Decision, RateLimiterError> {
    return this.lock.withPermits(1)(Effect.suspend(() => this.refreshLoop(cost, 0)))
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
        this.adoptLimit(grant.limit)
        const decision = this.spender.refuse(grant.expiresAt, grant.retryAfterMs)
        if (grant.retryAfterMs > 0) this.refusal = { until: now + grant.retryAfterMs, decision }
        return Effect.succeed(fromData(decision))
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
