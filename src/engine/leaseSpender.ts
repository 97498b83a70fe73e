/**
 * The fleet lease spender, CONTRACT.md §4: a client holds credits granted by the server (Fleet.Reserve)
 * and spends them locally; when they run short it asks for more, it never invents a denial.
 *
 * Spend of `cost` at `now`:
 * 1. `cost` must be a positive finite number, else the answer is `InvalidCost` (nothing changes). The
 *    spender returns this as data rather than throwing, so an Effect caller can map it to its typed
 *    `InvalidArgument` (or validate first with `Validate.cost`).
 * 2. window-coupled: when credits > 0 and `now >= expiresAt`, the credits are discarded (they belong to
 *    a window that has ended);
 * 3. credits >= cost: credits -= cost, and the answer is the allow decision
 *    `{ allowed: true, limit, remaining: max(0, floor(credits)), resetAt: expiresAt (now + ttlMs before any
 *    grant), retryAfterMs: 0 }`;
 * 4. otherwise the answer is the shared `NeedsRefresh` sentinel (no allocation).
 *
 * `grant(capacity, expiresAt)` adds the capacity to the credits and adopts the new expiry, so leftover
 * credits of the same window carry into the grant. A refused grant (capacity 0) is the server's denial:
 * `refuse(expiryMs, retryAfterMs)` builds it and changes nothing.
 *
 * Mutable on purpose: this sits on the hot path of every local spend.
 *
 * @since 0.1.0
 */
import { type DecisionData, decisionOf } from "../Decision.js"

/**
 * The spender's parameters: the global per-window limit it reports, the fallback reset horizon before
 * any grant, and whether leftover credits die at the window's end.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseSpenderOptions {
  readonly limit: number
  readonly ttlMs: number
  readonly windowCoupled: boolean
}

/**
 * "Ask the server for a grant, then spend again": the credits do not cover the cost.
 *
 * @since 0.1.0
 * @category models
 */
export interface NeedsRefresh {
  readonly _tag: "NeedsRefresh"
}

/**
 * The one `NeedsRefresh` value every spend returns (compare by reference or by `_tag`).
 *
 * @since 0.1.0
 * @category constants
 */
export const NeedsRefresh: NeedsRefresh = Object.freeze({ _tag: "NeedsRefresh" })

/**
 * A usage error: the cost was not a positive finite number. Nothing was spent.
 *
 * @since 0.1.0
 * @category models
 */
export interface InvalidCost {
  readonly _tag: "InvalidCost"
  readonly reason: string
}

/**
 * What a spend answers: an allow decision, `NeedsRefresh`, or `InvalidCost`.
 *
 * @since 0.1.0
 * @category models
 */
export type SpendResult = DecisionData | NeedsRefresh | InvalidCost

/**
 * True when a spend answered with a decision (it was allowed).
 *
 * @since 0.1.0
 * @category guards
 */
export const isDecision = (result: SpendResult): result is DecisionData => !("_tag" in result)

/**
 * The local credit holder of one fleet lease.
 *
 * @since 0.1.0
 * @category models
 */
export class LeaseSpender {
  readonly limit: number
  readonly ttlMs: number
  readonly windowCoupled: boolean
  private heldCredits = 0
  private expiry: number | undefined = undefined

  constructor(options: LeaseSpenderOptions) {
    this.limit = options.limit
    this.ttlMs = options.ttlMs
    this.windowCoupled = options.windowCoupled
  }

  /** The credits currently held (may be fractional when fractional costs were spent). */
  get credits(): number {
    return this.heldCredits
  }

  /** The expiry of the latest grant (epoch-ms), or `undefined` before any grant. */
  get expiresAt(): number | undefined {
    return this.expiry
  }

  /** Spends `cost` at `now` (see the module documentation for the exact rules). */
  spend(now: number, cost: number): SpendResult {
    if (typeof cost !== "number" || !Number.isFinite(cost) || !(cost > 0)) {
      return { _tag: "InvalidCost", reason: `cost must be a positive finite number, got ${cost}` }
    }
    if (this.windowCoupled && this.heldCredits > 0 && this.expiry !== undefined && now >= this.expiry) {
      this.heldCredits = 0
    }
    if (this.heldCredits >= cost) {
      this.heldCredits -= cost
      const whole = Math.floor(this.heldCredits)
      // A `Decision` itself (no plain object for a door to copy: this is every leased check's hot path).
      return decisionOf(
        true,
        this.limit,
        whole < 0 ? 0 : whole,
        this.expiry === undefined ? now + this.ttlMs : this.expiry,
        0
      )
    }
    return NeedsRefresh
  }

  /**
   * Adds a grant: `capacity` more credits (a non-positive or non-finite capacity adds none) and the
   * window boundary `expiresAt` at which window-coupled credits die.
   */
  grant(capacity: number, expiresAt: number): void {
    if (Number.isFinite(capacity) && capacity > 0) this.heldCredits += capacity
    if (Number.isFinite(expiresAt)) this.expiry = expiresAt
  }

  /** The server's denial for a refused grant (capacity 0). Changes nothing. */
  refuse(expiryMs: number, retryAfterMs: number): DecisionData {
    return {
      allowed: false,
      limit: this.limit,
      remaining: 0,
      resetAt: expiryMs,
      retryAfterMs: retryAfterMs > 0 ? retryAfterMs : 0
    }
  }
}
