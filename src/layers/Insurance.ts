/**
 * Insurance: instead of all-open or all-closed while the shared store (Redis) is unreachable, each
 * process decides alone against its share of every limit, and goes back to the store by itself once it
 * answers again. A store wrapper (as `FailMode`) around the Redis store, which `RedisBackend` applies
 * when given `insurance` (and the server with `--insurance-instances N` / `--insurance-share S`).
 *
 * - **The share**: `instances: N` gives each process `1/N` of each limit (`floor(limit / N)`), `share: s`
 *   gives it `floor(limit × s)`; at least 1 unit either way. So while the store is down, N processes
 *   admit at most the sum of their shares per window, which is at most the limit when every process
 *   holds `1/N` (a limit below N admits up to N units: one per process). What is scaled: a GCRA's `limit`
 *   and `burst`, a token bucket's `capacity` and `refillPerSec`, a window's or a quota's `limit`, a token
 *   budget's `budget`. The local state lives in this process's memory (the Memory door's engine and key
 *   tables, with the scaled policies) and is kept across outages.
 * - **What is insured**: limiter `check` / `checkMany` and meter `debit`. Their decisions, while degraded,
 *   carry `Decision.degraded` and their `limit` is the share. `peek` and `forecast` read the store and
 *   keep failing (`ServiceUnavailable`); so do admitters (`admit`, `release`, `heartbeat`: a held slot is
 *   a lease in the store, which must be renewed and released there; a `distributedConcurrency` policy has
 *   its own outage mode, `onCoordinatorOutage`) and fair escrows' checks.
 * - **When**: a call that fails with `ServiceUnavailable` (unreachable, or no answer within the bound) is
 *   answered from the local share, and the store is marked down: from then on calls go straight to the
 *   local share (none waits for the store's bound) while one probe (the store's PING, every
 *   `probeIntervalMs`, default 500 ms) asks whether it is back. The first answer puts the store back in
 *   charge, without a restart. A call that failed was never applied by the store (the Redis door fences
 *   every consuming script): counted locally, it is counted once.
 * - **Counted**: each degraded answer through `onDegraded` (the server's
 *   `throttlekit_degraded_answers_total`), each change of state through `onStateChange`
 *   (`throttlekit_store_degraded`), and one log line per change of state.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { type Decision, degradedOf } from "../Decision.js"
import { BackendError, type RateLimiterError, type ServiceUnavailable } from "../Errors.js"
import type { LimiterPolicy, MeterPolicy, Policy, Strategy } from "../Policy.js"
import { PolicySet } from "../PolicySet.js"
import { type BoundLimiter, type BoundMeter, type LocalStore, mapLocal } from "../services/RateLimiterStore.js"
import * as MemoryBackend from "./MemoryBackend.js"

/**
 * How much of each limit this process holds while the store is down: `instances` (a whole number ≥ 1:
 * each process holds `1/instances`) or `share` (a fraction in (0, 1]); exactly one of them. The hooks are
 * told of degraded answers and of changes of state (they must not throw).
 *
 * @since 0.3.0
 * @category models
 */
export interface InsuranceOptions {
  /** The processes sharing the store: each holds `floor(limit / instances)` (at least 1). */
  readonly instances?: number
  /** This process's fraction of each limit, in (0, 1]: it holds `floor(limit × share)` (at least 1). */
  readonly share?: number
  /** How often the store is probed while it is down, in ms (default 500). */
  readonly probeIntervalMs?: number
  /** `answers` calls of `policy` were answered from the local share (a `checkMany` counts its keys). */
  readonly onDegraded?: (policy: string, answers: number) => void
  /** The store went down (`true`: deciding locally) or came back (`false`). */
  readonly onStateChange?: (degraded: boolean) => void
}

/**
 * The default probe interval while the store is down, in ms.
 *
 * @since 0.3.0
 * @category constants
 */
export const DEFAULT_PROBE_INTERVAL_MS = 500

/**
 * The part of an amount this process holds (at least 1), or why the options name no share.
 *
 * @since 0.3.0
 * @category utils
 */
export const shareOf = (options: InsuranceOptions): Either.Either<(amount: number) => number, string> => {
  const { instances, share } = options
  if ((instances === undefined) === (share === undefined)) {
    return Either.left("insurance takes exactly one of instances or share")
  }
  if (instances !== undefined) {
    return Number.isSafeInteger(instances) && instances >= 1
      ? Either.right((amount) => Math.max(1, Math.floor(amount / instances)))
      : Either.left(`insurance instances must be a whole number ≥ 1, got ${instances}`)
  }
  return typeof share === "number" && Number.isFinite(share) && share > 0 && share <= 1
    ? Either.right((amount) => Math.max(1, Math.floor(amount * share)))
    : Either.left(`insurance share must be a number in (0, 1], got ${share}`)
}

/** The fraction of a rate (a token bucket's refill) this process holds. */
const rateShareOf = (options: InsuranceOptions): number =>
  options.instances !== undefined ? 1 / options.instances : options.share ?? 1

const scaledStrategy = (strategy: Strategy, part: (amount: number) => number, rate: number): Strategy => {
  switch (strategy.kind) {
    case "gcra":
      return { ...strategy, limit: part(strategy.limit), burst: part(strategy.burst) }
    case "tokenBucket":
      return {
        ...strategy,
        capacity: part(strategy.capacity),
        refillPerSec: Math.max(1e-6, strategy.refillPerSec * rate)
      }
    default:
      return { ...strategy, limit: part(strategy.limit) }
  }
}

/**
 * A policy as this process holds it while the store is down: a limiter's strategy and a meter's budget
 * scaled to the share (a plain local limiter: no two tiers, no federation); other kinds unchanged (they
 * are not insured).
 *
 * @since 0.3.0
 * @category utils
 */
export const scaledPolicy = (policy: Policy, part: (amount: number) => number, rate: number): Policy => {
  switch (policy.kind) {
    case "limiter": {
      const local: LimiterPolicy = {
        kind: "limiter",
        name: policy.name,
        prefix: policy.prefix,
        strategy: scaledStrategy(policy.strategy, part, rate),
        maxKeys: policy.maxKeys
      }
      return local
    }
    case "meter": {
      const local: MeterPolicy = { ...policy, budget: part(policy.budget), shared: false }
      return local
    }
    default:
      return policy
  }
}

const configError = (detail: string) => new BackendError({ backend: "insurance", code: "CONFIG", detail })

/**
 * Wraps `inner` with insurance: its limiter checks and meter debits are answered from this process's
 * share while the store is down (see the module). `probe` answers when the store is reachable (the Redis
 * door's PING); the probe fiber lives in the scope. Bad options fail with `BackendError` (code `CONFIG`).
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  inner: LocalStore,
  options: InsuranceOptions & { readonly probe: Effect.Effect<void, ServiceUnavailable> }
): Effect.Effect<LocalStore, BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const part = yield* Either.mapLeft(shareOf(options), configError)
    const interval = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS
    if (!Number.isSafeInteger(interval) || interval < 1) {
      return yield* configError(`insurance probeIntervalMs must be a whole number ≥ 1, got ${interval}`)
    }
    const rate = rateShareOf(options)
    const scaled = yield* PolicySet.from(inner.policies.policies.map((policy) => scaledPolicy(policy, part, rate)))
      .pipe(Effect.mapError((error) => configError(`a policy's local share is not a valid policy: ${error.message}`)))
    const local = yield* Effect.mapError(
      MemoryBackend.makeStore({ policies: scaled }),
      (error) => configError(error.message)
    )
    const scope = yield* Effect.scope
    const onDegraded = options.onDegraded ?? (() => {})
    const onStateChange = options.onStateChange ?? (() => {})
    const state = { degraded: false }

    /** Probes until the store answers, then puts it back in charge. */
    const recover = Effect.retry(options.probe, Schedule.spaced(interval)).pipe(
      Effect.zipRight(Effect.sync(() => {
        state.degraded = false
        onStateChange(false)
      })),
      Effect.zipRight(Effect.logInfo("the store answers again: decisions are the store's again")),
      Effect.interruptible
    )

    /** Marks the store down (once per outage) and starts the probe. */
    const degrade = (error: ServiceUnavailable): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (state.degraded) return Effect.void
        state.degraded = true
        onStateChange(true)
        return Effect.zipRight(
          Effect.logWarning(
            `the store is unreachable (${error.message}): limiter checks and meter debits are decided in this ` +
              "process against its share of each limit until the store answers again"
          ),
          Effect.asVoid(Effect.forkIn(recover, scope))
        )
      })

    const scaledOf = (name: string) => scaled.get(name)

    /**
     * The store's answer while it is up, the local share's once it is down (the call that finds it down
     * is answered locally too). The state is read when the call runs: an Effect may be run again
     * (retried, repeated).
     */
    const insured = <A>(
      store: Effect.Effect<A, RateLimiterError>,
      share: Effect.Effect<A, RateLimiterError>
    ): Effect.Effect<A, RateLimiterError> =>
      Effect.suspend(() =>
        state.degraded
          ? share
          : Effect.catchTag(store, "ServiceUnavailable", (error) => Effect.zipRight(degrade(error), share))
      )

    /** One decision of `policy` answered from the local share: counted, and marked degraded. */
    const degradedAnswer = (policy: string) => (decision: Decision): Decision => {
      onDegraded(policy, 1)
      return degradedOf(decision)
    }

    return mapLocal(inner, {
      limiter: (policy, bound): BoundLimiter => {
        const found = scaledOf(policy.name)
        if (found._tag === "None" || found.value.kind !== "limiter") return bound
        const name = policy.name
        const share = local.limiter(found.value)
        const answered = degradedAnswer(name)
        const localCheck = (key: string, cost: number) => Effect.map(share.check(key, cost), answered)
        const localCheckMany = (keys: ReadonlyArray<string>, cost: number) =>
          Effect.map(share.checkMany(keys, cost), (decisions) => {
            onDegraded(name, decisions.length)
            return decisions.map(degradedOf)
          })
        return {
          ...bound,
          check: (key, cost) => insured(bound.check(key, cost), localCheck(key, cost)),
          checkMany: (keys, cost) => insured(bound.checkMany(keys, cost), localCheckMany(keys, cost))
        }
      },
      meter: (policy, bound): BoundMeter => {
        const found = scaledOf(policy.name)
        if (found._tag === "None" || found.value.kind !== "meter") return bound
        const share = local.meter(found.value)
        const answered = degradedAnswer(policy.name)
        const localDebit = (key: string, tokens: number) => Effect.map(share.debit(key, tokens), answered)
        return {
          ...bound,
          debit: (key, tokens) => insured(bound.debit(key, tokens), localDebit(key, tokens))
        }
      }
    })
  })
