/**
 * The server's store-outage policy, `serve --fail open|closed` (default `open`, as the reference server).
 *
 * When the store is down (`ServiceUnavailable`), `check` and `checkMany` on a limiter policy do not fail:
 * they answer a synthesized decision instead — allowed under `open`, denied under `closed` — with
 * `limit` = the policy's reported limit, `remaining` = the limit when allowed else 0, and `resetAt` =
 * `retryAfterMs` = 0 (so a caller can tell it from a real decision). `checkMany` answers the whole batch
 * that way. Each outage is logged with `Effect.logWarning`, at most one line per second (the line counts
 * the outages it stood for), so a long outage does not flood the log.
 *
 * Everything else keeps its error: an unknown policy (`PolicyNotFound`), the wrong operation for the
 * policy's kind (`OperationNotSupported`) and bad input (`InvalidArgument`) are answered as before, and
 * `debit`, `admit`, `peek` and `forecast` still fail with `ServiceUnavailable` (gRPC `UNAVAILABLE`). This is
 * stricter than the reference server, which synthesized a decision for any error of a limiter check,
 * argument errors included, and answered `INTERNAL` for store faults on the other operations.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import { type Decision, fromData } from "../Decision.js"
import type { ServiceUnavailable } from "../Errors.js"
import { type Policy, reportedLimit } from "../Policy.js"
import { RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"

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
  /** The served policies (only limiter policies are affected). */
  readonly policies: ReadonlyArray<Policy> | { readonly policies: ReadonlyArray<Policy> }
  /** The least time between two outage log lines, in ms (default 1000). */
  readonly logIntervalMs?: number
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
 * Wraps `inner` with the fail mode; the log throttle lives in the returned service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (inner: RateLimiterService, options: FailModeOptions): Effect.Effect<RateLimiterService> =>
  Effect.gen(function*() {
    const mode = options.mode
    const logIntervalMs = options.logIntervalMs ?? 1000
    const list = "policies" in options.policies ? options.policies.policies : options.policies
    const limits = new Map<string, number>()
    for (const policy of list) {
      if (policy.kind === "limiter") limits.set(policy.name, reportedLimit(policy.strategy))
    }
    const logState = yield* Ref.make<LogState>({ lastLoggedAt: Number.NEGATIVE_INFINITY, unreported: 0 })

    const logOutage = (operation: string, policy: string, error: ServiceUnavailable) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(
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
        ))

    const check: RateLimiterService["check"] = (policy, key, cost) => {
      const limit = limits.get(policy)
      if (limit === undefined) return inner.check(policy, key, cost)
      return Effect.catchTag(
        inner.check(policy, key, cost),
        "ServiceUnavailable",
        (error) => Effect.as(logOutage("check", policy, error), synthesizedDecision(mode, limit))
      )
    }

    const checkMany: RateLimiterService["checkMany"] = (policy, keys, cost) => {
      const limit = limits.get(policy)
      if (limit === undefined) return inner.checkMany(policy, keys, cost)
      return Effect.catchTag(
        inner.checkMany(policy, keys, cost),
        "ServiceUnavailable",
        (error) =>
          Effect.as(
            logOutage("checkMany", policy, error),
            keys.map(() => synthesizedDecision(mode, limit))
          )
      )
    }

    return { ...inner, check, checkMany }
  })

/**
 * The `RateLimiter` below, wrapped with the fail mode.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: FailModeOptions): Layer.Layer<RateLimiter, never, RateLimiter> =>
  Layer.effect(RateLimiter, Effect.flatMap(RateLimiter, (inner) => make(inner, options)))
