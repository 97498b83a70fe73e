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
}

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
 * The coordinator key of a federated budget: `prefix:{domain}`. The domain sits in a hash tag (one
 * cluster slot per domain) and the key differs from the reference `RedisCoordinator`'s `prefix:domain`,
 * whose hash layout is not ours, so the two never misread each other's state.
 *
 * @since 0.1.0
 * @category keys
 * @internal
 */
export const federatedKey = (prefix: string, domain: string): string => storeKey(prefix, `{${domain}}`)
