/**
 * The global-budget coordinator: the one oracle of a windowed budget that many holders lease from. A
 * server's two-tier limiter leases its local (L1) credits here, and `Fleet.Reserve` leases remote
 * clients' credits here; with one shared store (Redis) every server of a fleet draws from one budget.
 *
 * `reserve(strategy, key, wants)` grants 0..wants units of `key`'s per-window budget (partial grants are
 * normal, 0 is a refusal) and says until when they are valid (the window boundary, by the store's clock).
 * See `reserve.ts` for the arithmetic and `MemoryCoordinator` / `RedisCoordinator` for the stores.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { InvalidArgument, type RateLimiterError } from "../Errors.js"
import { storeKey } from "../Policy.js"
import * as Validate from "../Validate.js"
import type { Grant, WindowedStrategy } from "./reserve.js"

export type {
  /** @since 0.1.0 */
  Grant,
  /** @since 0.1.0 */
  WindowedStrategy
} from "./reserve.js"

/**
 * The coordinator's operations.
 *
 * @since 0.1.0
 * @category models
 */
export interface CoordinatorService {
  /** Names the store in logs and errors ("memory", "redis"). */
  readonly store: string
  /**
   * Grants up to `wants` (a whole number ≥ 1) units of `key`'s budget under `strategy`. Bad input fails
   * with `InvalidArgument` and changes nothing.
   */
  readonly reserve: (
    strategy: WindowedStrategy,
    key: string,
    wants: number
  ) => Effect.Effect<Grant, RateLimiterError>
  /**
   * Optional, for callers outside any fiber (a background lease refresh, so it costs no fiber): the same
   * reservation as `reserve`, its outcome reported exactly once through `done` (bad input too, possibly
   * before `reserveCallback` returns). Stores without it are run in a fiber.
   */
  readonly reserveCallback?: (
    strategy: WindowedStrategy,
    key: string,
    wants: number,
    done: (result: Exit.Exit<Grant, RateLimiterError>) => void
  ) => void
  /**
   * Optional: grants up to `wants` units of `key`'s federated budget, `limit` units per epoch-aligned
   * window of `windowMs`, kept as the ThrottleKit core's coordinator keeps it (the Redis one: a hash with
   * `budget` and `expiresAt`, so a core server on the same Redis draws from the same budget). Stores
   * without it grant a fixed-window reservation of the same budget (`federatedLease`), the same arithmetic.
   *
   * @since 0.3.0
   */
  readonly lease?: (
    budget: FederatedBudget,
    key: string,
    wants: number
  ) => Effect.Effect<Grant, RateLimiterError>
}

/**
 * A federated budget: `limit` units per epoch-aligned window of `windowMs` (a federated policy's strategy
 * limit and window).
 *
 * @since 0.3.0
 * @category models
 */
export interface FederatedBudget {
  readonly limit: number
  readonly windowMs: number
}

/**
 * Leases up to `wants` units of a federated budget from `coordinator`: its `lease` when it has one, else a
 * fixed-window reservation of the budget (the same arithmetic). What `check` on a federated policy and
 * `Fleet.Reserve` draw from.
 *
 * @since 0.3.0
 * @category utils
 * @internal
 */
export const federatedLease = (
  coordinator: CoordinatorService,
  budget: FederatedBudget,
  key: string,
  wants: number
): Effect.Effect<Grant, RateLimiterError> =>
  coordinator.lease === undefined
    ? coordinator.reserve({ kind: "fixedWindow", limit: budget.limit, windowMs: budget.windowMs }, key, wants)
    : coordinator.lease(budget, key, wants)

/**
 * The coordinator tag. Provide it with `MemoryCoordinator.layer` or `RedisCoordinator.layer`.
 *
 * @since 0.1.0
 * @category tags
 */
export class Coordinator extends Context.Tag("throttlekit-effect/Coordinator")<Coordinator, CoordinatorService>() {}

/**
 * Checks a reservation's key and amount; `undefined` when both are usable.
 *
 * @since 0.1.0
 * @category validation
 * @internal
 */
export const reservationProblem = (key: string, wants: number): InvalidArgument | undefined => {
  const keyProblem = Validate.keyProblem(key)
  if (keyProblem !== undefined) return new InvalidArgument({ argument: "key", reason: keyProblem })
  const wantsProblem = Validate.costProblem(wants)
  if (wantsProblem !== undefined) return new InvalidArgument({ argument: "wants", reason: wantsProblem })
  return undefined
}

/**
 * Fails with the reservation's problem, if any.
 *
 * @since 0.1.0
 * @category validation
 * @internal
 */
export const validateReservation = (key: string, wants: number): Effect.Effect<void, InvalidArgument> => {
  const problem = reservationProblem(key, wants)
  return problem === undefined ? Effect.void : Effect.fail(problem)
}

/**
 * The coordinator key of a federated budget: `prefix:domain` (just `domain` without a prefix), the
 * ThrottleKit core's key, whose state (`lease`) is the core's too, so a mixed fleet of core servers and
 * these draws from one budget per domain. (Before 0.3 it was `prefix:{domain}`, with a fixed window's
 * state: a mixed fleet then kept two budgets.) One key per script, so no hash tag is needed in a cluster.
 *
 * @since 0.1.0
 * @category keys
 * @internal
 */
export const federatedKey = (prefix: string, domain: string): string => storeKey(prefix, domain)
