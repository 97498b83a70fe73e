/**
 * The server's store-outage policy, `serve --fail open|closed` (default `open`, as the reference server).
 *
 * When the store is down (`ServiceUnavailable`), `check` and `checkMany` on a limiter policy (and `check`
 * on a fair-escrow one, whose limit is its budget) do not fail:
 * they answer a synthesized decision instead — allowed under `open`, denied under `closed` — with
 * `limit` = the policy's reported limit, `remaining` = the limit when allowed else 0, and `resetAt` =
 * `retryAfterMs` = 0 (so a caller can tell it from a real decision). `checkMany` answers the whole batch
 * that way. Each outage is logged with `Effect.logWarning`, at most one line per second (the line counts
 * the outages it stood for), so a long outage does not flood the log; each answer is also counted through
 * `onOutage` (the server's `throttlekit_store_outage_answers_total`).
 *
 * It is a store wrapper: it wraps the bound limiters of the store below (each policy's limit comes from
 * the policy it is bound to) and sits under the front, so an unknown policy (`PolicyNotFound`), the wrong
 * operation for the policy's kind (`OperationNotSupported`) and bad input (`InvalidArgument`) are raised
 * by the front before the store is reached, as on every door. Everything else keeps its error: `debit`,
 * `admit` (acquire, release, heartbeat), `peek` and `forecast` still fail with `ServiceUnavailable`
 * (gRPC `UNAVAILABLE`). This is stricter than the reference server, which synthesized a decision for any
 * error of a limiter check, argument errors included, and answered `INTERNAL` for store faults on the
 * other operations.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { type Decision, fromData } from "../Decision.js"
import type { ServiceUnavailable } from "../Errors.js"
import { reportedLimit } from "../Policy.js"
import { type LocalStore, mapLocal, type RateLimiterStore, Store } from "../services/RateLimiterStore.js"

/**
 * How limiter checks answer while the store is down: `open` allows, `closed` denies.
 *
 * @since 0.1.0
 * @category models
 */
export type FailMode = "open" | "closed"

/**
 * The fail modes, in the order the usage text names them.
 *
 * @since 0.1.0
 * @category constants
 */
export const failModes: ReadonlyArray<FailMode> = ["open", "closed"]

/**
 * The default fail mode (the reference server's).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_FAIL_MODE: FailMode = "open"

/**
 * What the wrapper needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface FailModeOptions {
  readonly mode: FailMode
  /** The least time between two outage log lines, in ms (default 1000). */
  readonly logIntervalMs?: number
  /**
   * Told of each outage answer: `answers` checks of `policy` answered with the synthesized decision (a
   * `checkMany` counts its keys). Must not throw.
   *
   * @since 0.3.0
   */
  readonly onOutage?: (policy: string, answers: number) => void
}

/**
 * The decision answered for a limiter of `limit` while the store is down.
 *
 * @since 0.1.0
 * @category constructors
 */
export const synthesizedDecision = (mode: FailMode, limit: number): Decision =>
  fromData({
    allowed: mode === "open",
    limit,
    remaining: mode === "open" ? limit : 0,
    resetAt: 0,
    retryAfterMs: 0
  })

interface LogState {
  /** When the last line was written (epoch-ms), or -Infinity before the first. */
  readonly lastLoggedAt: number
  /** Outages answered since the last line and not yet reported. */
  readonly unreported: number
}

/**
 * Wraps `inner` with the fail mode: the checks of its limiter policies answer a synthesized decision
 * while the store is down. The log throttle lives in the returned store.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (inner: LocalStore, options: FailModeOptions): Effect.Effect<LocalStore> =>
  Effect.gen(function*() {
    const mode = options.mode
    const logIntervalMs = options.logIntervalMs ?? 1000
    const onOutage = options.onOutage
    const logState = yield* Ref.make<LogState>({ lastLoggedAt: Number.NEGATIVE_INFINITY, unreported: 0 })

    /** Counts an outage answer (`onOutage`) and logs it, at most one line per `logIntervalMs`. */
    const noteOutage = (operation: string, policy: string, error: ServiceUnavailable, answers: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (onOutage !== undefined) onOutage(policy, answers)
        return Effect.flatMap(
          Ref.modify(logState, (state): readonly [number, LogState] =>
            now - state.lastLoggedAt >= logIntervalMs
              ? [state.unreported, { lastLoggedAt: now, unreported: 0 }]
              : [-1, { lastLoggedAt: state.lastLoggedAt, unreported: state.unreported + 1 }]),
          (unreported) =>
            unreported < 0 ? Effect.void : Effect.logWarning(
              `store outage: ${operation} on policy ${JSON.stringify(policy)} answered fail-${mode} ` +
                `(${mode === "open" ? "allowed" : "denied"}): ${error.message}` +
                (unreported > 0 ? ` (and ${unreported} more outage answers since the last line)` : "")
            )
        )
      })

    return mapLocal(inner, {
      limiter: (policy, bound) => {
        const decision = synthesizedDecision(mode, reportedLimit(policy.strategy))
        return {
          ...bound,
          check: (key, cost) =>
            Effect.catchTag(
              bound.check(key, cost),
              "ServiceUnavailable",
              (error) => Effect.as(noteOutage("check", policy.name, error, 1), decision)
            ),
          checkMany: (keys, cost) =>
            Effect.catchTag(
              bound.checkMany(keys, cost),
              "ServiceUnavailable",
              (error) => Effect.as(noteOutage("checkMany", policy.name, error, keys.length), keys.map(() => decision))
            )
        }
      },
      // A federated fair escrow's pool is in the store: its check answers as a limiter's, with the budget.
      fair: (policy, bound) => {
        const decision = synthesizedDecision(mode, policy.fairEscrow.limit)
        return {
          check: (key, cost) =>
            Effect.catchTag(
              bound.check(key, cost),
              "ServiceUnavailable",
              (error) => Effect.as(noteOutage("check", policy.name, error, 1), decision)
            )
        }
      }
    })
  })

/**
 * The `Store` below, wrapped with the fail mode (under the front: `RateLimiter.layer()` goes on top).
 * A remote store (the Service door) passes through unchanged.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: FailModeOptions): Layer.Layer<Store, never, Store> =>
  Layer.effect(
    Store,
    Effect.flatMap(
      Store,
      (inner): Effect.Effect<RateLimiterStore> => inner._tag === "Local" ? make(inner, options) : Effect.succeed(inner)
    )
  )
