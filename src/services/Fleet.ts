/**
 * The `Fleet` service: tier-2 fleet leasing from a ThrottleKit server's `Fleet.Reserve`. A client leases
 * a share of a `federated:` policy's global per-window budget and spends it locally, so a hot path costs
 * no round trip and the whole fleet still admits at most `limit` per window (with window coupling).
 *
 * - `reserve` is the raw lease: up to `wants` units (partial grants are normal, 0 is a refusal) valid
 *   until `expiryMs`, the window boundary by the server's store clock.
 * - `leased` is the limiter built on it: `check(cost)` spends leased credits with the lease spender of
 *   CONTRACT.md §4 (a synchronous local step) and calls `Reserve` only when they run short. Fibers sharing
 *   one leased limiter never spend a credit twice, and at most one of them refreshes at a time.
 *
 * Provide it with `FleetBackend.layer`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Decision } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"

/**
 * The budget axis a lease draws from. `concurrency` is not leasable (the server answers
 * `OperationNotSupported`); `rate` and `tokenBudget` draw from the policy's windowed budget.
 *
 * @since 0.1.0
 * @category models
 */
export const FleetAxis = Schema.Literal("rate", "concurrency", "tokenBudget")

/**
 * @since 0.1.0
 * @category models
 */
export type FleetAxis = typeof FleetAxis.Type

/**
 * A lease granted by `Fleet.Reserve`.
 *
 * @since 0.1.0
 * @category models
 */
export class Lease extends Schema.Class<Lease>("Lease")({
  /** Units granted, 0..wants; 0 is a refusal. */
  capacity: Schema.Number,
  /** Epoch-ms window boundary: window-coupled credits die at this instant. */
  expiryMs: Schema.Number,
  /** When to ask again, ms (time left to the boundary, at least 1). */
  refreshIntervalMs: Schema.Number,
  /** Units safe to spend (equal to `capacity` in v1). */
  safeCapacity: Schema.Number,
  /** When refused: ms to wait before asking again; 0 otherwise. */
  retryAfterMs: Schema.Number,
  /** The global per-window ceiling. */
  limit: Schema.Number
}) {
  /** True when nothing was granted. */
  get refused(): boolean {
    return this.capacity === 0
  }
}

/**
 * Options of one reservation.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReserveOptions {
  /** The budget domain ("" or absent = the policy's whole budget). */
  readonly domain?: string
  /** Units wanted, a whole number ≥ 1 (default 1). */
  readonly wants?: number
  /** The axis (default "rate"). */
  readonly axis?: FleetAxis
  /** Identifies this client to the server (informational). */
  readonly clientId?: string
}

/**
 * Options of a leased limiter.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeasedOptions {
  /** The budget domain ("" or absent = the policy's whole budget). */
  readonly domain?: string
  /** Units asked for per refresh, a whole number ≥ 1 (a check costing more asks for more). */
  readonly batch: number
  /** Discard credits at their window's end (default true: the exact fleet bound). */
  readonly windowCoupled?: boolean
  /** Identifies this client to the server (informational). */
  readonly clientId?: string
}

/**
 * A limiter answering from leased credits.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeasedLimiter {
  /**
   * Spends `cost` (a whole number ≥ 1, default 1). Allowed from local credits without a round trip;
   * when they run short, one `Reserve` (shared by every fiber waiting) tops them up. A refused lease is
   * the server's denial (remembered until its retry time).
   */
  readonly check: (cost?: number) => Effect.Effect<Decision, RateLimiterError>
  /** The credits held now. */
  readonly credits: () => number
  /** The boundary of the latest grant (epoch-ms), or `undefined` before the first. */
  readonly expiresAt: () => number | undefined
}

/**
 * The service interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface FleetService {
  /** Leases up to `wants` units of `policy`'s budget. */
  readonly reserve: (policy: string, options?: ReserveOptions) => Effect.Effect<Lease, RateLimiterError>
  /** A limiter spending credits leased from `policy`'s budget (nothing is leased until its first check). */
  readonly leased: (policy: string, options: LeasedOptions) => Effect.Effect<LeasedLimiter, RateLimiterError>
}

/**
 * The `Fleet` tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class Fleet extends Context.Tag("throttlekit-effect/Fleet")<Fleet, FleetService>() {}
