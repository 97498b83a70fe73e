/**
 * The Memory door: the `RateLimiter` service computed in this process by the pure engine, reading time
 * from Effect's `Clock` (so `TestClock` drives it). The embedded default: no Redis, no server.
 *
 * State is bounded: each policy keeps at most `maxKeys` keys (expired state is dropped first, then the
 * least recently written). Admissions hold leases with a TTL (2000 ms by default) that are reclaimed as
 * dropped when neither released nor renewed in time: expired leases are swept on every acquire and
 * heartbeat, so the backend runs no timer of its own.
 *
 * Besides `RateLimiter`, `layer` provides `Local`: the same key tables behind a synchronous `check` that
 * returns an `Either` (see `MemoryLocal.ts`), for loops where an Effect step per check costs more than
 * the check; `makeLocal` builds one without any Effect runtime.
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import * as Config from "../Config.js"
import { Admission, type Decision, type DecisionData, Forecast, fromData } from "../Decision.js"
import * as TokenBudget from "../engine/tokenBudget.js"
import { InvalidArgument, type OperationNotSupported, type PolicyNotFound, type RateLimiterError } from "../Errors.js"
import { makeAdmit } from "../internal/admission.js"
import type { Policy } from "../Policy.js"
import { type HeartbeatResult, RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"
import * as Validate from "../Validate.js"
import {
  type Compiled,
  type LocalLimiter,
  makeLocalLimiter,
  PolicyStore,
  RateState,
  unsupported
} from "./MemoryLocal.js"

export type {
  /** @since 0.1.0 */
  LocalCheck,
  /** @since 0.1.0 */
  LocalError,
  /** @since 0.1.0 */
  LocalLimiter
} from "./MemoryLocal.js"

/**
 * Options of the Memory door.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryBackendOptions {
  /** The policies to serve: an array, or a `PolicySet` from `Config.load`/`Config.parse`. */
  readonly policies: ReadonlyArray<Policy> | { readonly policies: ReadonlyArray<Policy> }
  /** Lease TTL in ms (default 2000). */
  readonly leaseTtlMs?: number
}

/**
 * The default lease TTL: twice the usual 1 s heartbeat, so one missed beat is tolerated.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_LEASE_TTL_MS = 2000

interface HeldLease {
  readonly policy: Extract<Compiled, { kind: "admitter" }>
  readonly acquiredAt: number
  expiresAt: number
}

const mintLeaseId = (): string => randomBytes(16).toString("hex")

/** The policies of `options`, from an array or a `PolicySet`. */
const policyList = (policies: MemoryBackendOptions["policies"]): ReadonlyArray<Policy> =>
  "policies" in policies ? policies.policies : policies

/**
 * Builds the Memory door's `RateLimiter` service. The lease sweeper and the admission keeper live in
 * the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MemoryBackendOptions): Effect.Effect<RateLimiterService, never, Scope.Scope> =>
  makeService(new PolicyStore(policyList(options.policies)), options)

/** The `RateLimiter` service over `store`. */
const makeService = (
  store: PolicyStore,
  options: MemoryBackendOptions
): Effect.Effect<RateLimiterService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ttlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS
    const leases = new Map<string, HeldLease>()

    const lookup = (name: string): Effect.Effect<Compiled, PolicyNotFound> => {
      const compiled = store.get(name)
      return compiled === undefined ? Effect.fail(store.notFound(name)) : Effect.succeed(compiled)
    }

    const limiterOf = (name: string, operation: OperationNotSupported["operation"]) => {
      const rate = store.rateOf(name, operation)
      return rate instanceof RateState ? Effect.succeed(rate) : Effect.fail(rate)
    }

    const check = (name: string, key: string, cost = 1): Effect.Effect<Decision, RateLimiterError> => {
      const rate = store.limiterFor(name, cost)
      if (rate === undefined) return Effect.fail(store.faultOf(name, key, cost, "check"))
      // The hot path: one clock read and the engine, no further Effect steps. (The key is checked there,
      // and only when the table does not hold it already; a bad one fails before any state is touched.)
      return Effect.clockWith((clock) => {
        const decision = rate.checkUnvalidated(key, clock.unsafeCurrentTimeMillis(), cost)
        return decision === undefined
          ? Effect.fail(store.faultOf(name, key, cost, "check"))
          : Effect.succeed(decision)
      })
    }

    const checkMany = (
      name: string,
      keys: ReadonlyArray<string>,
      cost = 1
    ): Effect.Effect<ReadonlyArray<Decision>, RateLimiterError> => {
      const costProblem = Validate.costProblem(cost)
      if (costProblem !== undefined) return Effect.fail(new InvalidArgument({ argument: "cost", reason: costProblem }))
      return Effect.zipRight(
        Validate.keys(keys),
        Effect.flatMap(
          limiterOf(name, "checkMany"),
          (rate) => Effect.map(Clock.currentTimeMillis, (now) => keys.map((key) => rate.check(key, now, cost)))
        )
      )
    }

    const peek = (name: string, key: string): Effect.Effect<Decision, RateLimiterError> =>
      Effect.zipRight(
        Validate.key(key),
        Effect.flatMap(
          limiterOf(name, "peek"),
          (rate) => Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.peek(key, now)))
        )
      )

    const forecast = (name: string, key: string, cost = 1): Effect.Effect<Forecast, RateLimiterError> =>
      Effect.zipRight(
        Effect.zipRight(Validate.cost(cost), Validate.key(key)),
        Effect.flatMap(
          limiterOf(name, "forecast"),
          (rate) => Effect.map(Clock.currentTimeMillis, (now) => new Forecast(rate.forecast(key, now, cost), true))
        )
      )

    const debit = (name: string, key: string, tokens = 1): Effect.Effect<Decision, RateLimiterError> =>
      Effect.zipRight(
        Effect.zipRight(Validate.cost(tokens, "tokens"), Validate.key(key)),
        Effect.flatMap(lookup(name), (compiled) => {
          if (compiled.kind !== "meter") return Effect.fail(unsupported(name, "debit", compiled.kind))
          return Effect.map(Clock.currentTimeMillis, (now) => {
            const step = TokenBudget.debit(compiled.budget, compiled.table.get(key, now), now, tokens)
            if (step.decision.allowed) compiled.table.set(key, step.state, now)
            return fromData(step.decision)
          })
        })
      )

    /** Releases a held lease into its guard; `dropped` contracts an adaptive ceiling. */
    const releaseLease = (id: string, lease: HeldLease, dropped: boolean, now: number) => {
      leases.delete(id)
      lease.policy.guard.release(dropped, Math.max(0, now - lease.acquiredAt))
    }

    /** Reclaims every lease whose expiry has passed, as dropped. */
    const sweep = (now: number) => {
      for (const [id, lease] of leases) {
        if (lease.expiresAt <= now) releaseLease(id, lease, true, now)
      }
    }

    const acquire = (
      name: string,
      key: string,
      admitOptions: { readonly cost?: number } = {}
    ): Effect.Effect<Admission, RateLimiterError> => {
      const cost = admitOptions.cost ?? 1
      return Effect.zipRight(
        Effect.zipRight(Validate.cost(cost), Validate.key(key)),
        Effect.flatMap(lookup(name), (compiled) => {
          if (compiled.kind !== "admitter") return Effect.fail(unsupported(name, "admit", compiled.kind))
          return Effect.map(Clock.currentTimeMillis, (now) => {
            sweep(now)
            const guard = compiled.guard
            if (!guard.canAcquire()) {
              const decision: DecisionData = {
                allowed: false,
                limit: guard.limit,
                remaining: 0,
                resetAt: now,
                retryAfterMs: Math.max(1, Math.round(guard.lastRttMs))
              }
              return denied(decision, "concurrency")
            }
            let rateDecision: DecisionData | undefined
            if (compiled.rate !== undefined) {
              rateDecision = compiled.rate.check(key, now, cost)
              if (!rateDecision.allowed) return denied(rateDecision, "rate")
            }
            guard.tryAcquire()
            const concurrencyDecision: DecisionData = {
              allowed: true,
              limit: guard.limit,
              remaining: Math.max(0, guard.limit - guard.inflight),
              resetAt: now,
              retryAfterMs: 0
            }
            const decision = rateDecision !== undefined && rateDecision.remaining < concurrencyDecision.remaining
              ? rateDecision
              : concurrencyDecision
            let id = mintLeaseId()
            while (leases.has(id)) id = mintLeaseId()
            leases.set(id, { policy: compiled, acquiredAt: now, expiresAt: now + ttlMs })
            return new Admission({
              decision: fromData(decision),
              leaseId: id,
              leaseExpiresAt: now + ttlMs,
              bindingAxis: "",
              policyDenied: false
            }, true)
          })
        })
      )
    }

    const release = (id: string, dropped: boolean): Effect.Effect<void> =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const lease = leases.get(id)
        if (lease !== undefined) releaseLease(id, lease, dropped, now)
      })

    const heartbeat = (ids: ReadonlyArray<string>): Effect.Effect<HeartbeatResult> =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        sweep(now)
        const live: Array<string> = []
        const reclaimed: Array<string> = []
        for (const id of ids) {
          const lease = leases.get(id)
          if (lease === undefined) {
            reclaimed.push(id)
          } else {
            lease.expiresAt = now + ttlMs
            live.push(id)
          }
        }
        return { live, reclaimed, nextDeadline: now + ttlMs }
      })

    const leaseOps = { ttlMs, acquire, release, heartbeat }
    const admit = yield* makeAdmit(leaseOps)

    return { backend: "memory", check, checkMany, peek, forecast, debit, admit, leases: leaseOps }
  })

const denied = (decision: DecisionData, axis: "rate" | "concurrency"): Admission =>
  new Admission({
    decision: fromData(decision),
    leaseId: "",
    leaseExpiresAt: 0,
    bindingAxis: axis,
    policyDenied: false
  }, true)

/**
 * The Memory door's synchronous limiter, provided by `layer` and `layerFile` beside `RateLimiter` and
 * sharing its key tables: a check through either counts against the same limits. Take it once and call
 * `local.check(...)` per item where an Effect step per check would cost more than the check.
 *
 * Its clock is the `Clock` of the fiber that built the layer, captured then (so a layer built under
 * `TestClock` follows the `TestClock`); the service's own methods read the calling fiber's `Clock` on
 * every call. In production both are the system clock.
 *
 * @since 0.1.0
 * @category tags
 */
export class Local extends Context.Tag("throttlekit-effect/MemoryBackend/Local")<Local, LocalLimiter>() {}

/**
 * Options of `makeLocal`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalOptions {
  /** The policies to serve: an array, or a `PolicySet` from `Config.load`/`Config.parse`. */
  readonly policies: MemoryBackendOptions["policies"]
  /** The clock, in epoch-ms (default `Date.now`). */
  readonly now?: () => number
}

/**
 * A standalone synchronous Memory limiter for code without an Effect runtime: its own key tables, read
 * with `now` (`Date.now` by default). To share state with a `RateLimiter` service, take `Local` from
 * `layer` instead.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLocal = (options: LocalOptions): LocalLimiter =>
  makeLocalLimiter(new PolicyStore(policyList(options.policies)), options.now ?? Date.now)

/** Both doors over one store; the synchronous one reads the building fiber's `Clock`. */
const makeDoors = (
  options: MemoryBackendOptions
): Effect.Effect<Context.Context<RateLimiter | Local>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const store = new PolicyStore(policyList(options.policies))
    const service = yield* makeService(store, options)
    const clock = yield* Effect.clock
    const local = makeLocalLimiter(store, () => clock.unsafeCurrentTimeMillis())
    return Context.add(Context.make(RateLimiter, service), Local, local)
  })

/**
 * The Memory door as a layer: the `RateLimiter` service and, on the same state, its synchronous
 * `Local` limiter.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MemoryBackendOptions): Layer.Layer<RateLimiter | Local> =>
  Layer.scopedContext(makeDoors(options))

/**
 * The Memory door serving the policies of a config file (YAML or JSON, the reference server's format),
 * with its `Local` limiter like `layer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFile = (
  path: string,
  options: Omit<MemoryBackendOptions, "policies"> = {}
): Layer.Layer<RateLimiter | Local, Config.ConfigError, FileSystem.FileSystem> =>
  Layer.scopedContext(Effect.flatMap(Config.load(path), (policies) => makeDoors({ ...options, policies })))
