/**
 * The Memory door: the `RateLimiter` service computed in this process by the pure engine, reading time
 * from Effect's `Clock` (so `TestClock` drives it). The embedded default: no Redis, no server.
 *
 * State is bounded: each policy keeps at most `maxKeys` keys (expired state is dropped first, then the
 * least recently written). Admissions hold leases with a TTL (2000 ms by default) that are reclaimed as
 * dropped when neither released nor renewed in time: expired leases are swept on every acquire and
 * heartbeat, so the backend runs no timer of its own.
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import * as Config from "../Config.js"
import { Admission, type Decision, type DecisionData, Forecast, fromData } from "../Decision.js"
import * as Concurrency from "../engine/concurrency.js"
import { rateEngine } from "../engine/index.js"
import * as TokenBudget from "../engine/tokenBudget.js"
import type { RateEngine } from "../engine/types.js"
import { InvalidArgument, OperationNotSupported, PolicyNotFound, type RateLimiterError } from "../Errors.js"
import { makeAdmit } from "../internal/admission.js"
import type { AdmitterPolicy, LimiterPolicy, MeterPolicy, Policy } from "../Policy.js"
import { type HeartbeatResult, RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"
import * as Validate from "../Validate.js"

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

/** One key's state and the table's write count when it was last written (its recency). */
interface Slot<S> {
  state: S
  written: number
}

/**
 * A per-policy key table with a cap: expired entries go first, then the least recently written.
 *
 * A write updates the key's slot in place and stamps it with a write counter. (Keeping the Map itself in
 * write order by deleting and re-inserting the key on every write looks cheaper, but V8 then walks a
 * growing chain of deleted entries on every lookup of a hot key: tens of µs per check once the table
 * holds thousands of keys.)
 */
class KeyTable<S> {
  private readonly entries = new Map<string, Slot<S>>()
  private writes = 0
  constructor(
    private readonly maxKeys: number,
    private readonly expiresAt: (state: S, now: number) => number
  ) {}

  get(key: string, now: number): S | undefined {
    const slot = this.entries.get(key)
    if (slot === undefined) return undefined
    if (this.expiresAt(slot.state, now) < now) {
      this.entries.delete(key)
      return undefined
    }
    return slot.state
  }

  set(key: string, state: S | undefined, now: number): void {
    if (state === undefined) {
      this.entries.delete(key)
      return
    }
    const slot = this.entries.get(key)
    if (slot !== undefined) {
      slot.state = state
      slot.written = ++this.writes
      return
    }
    this.entries.set(key, { state, written: ++this.writes })
    if (this.entries.size > this.maxKeys) this.evict(now)
  }

  get size(): number {
    return this.entries.size
  }

  /**
   * Brings the table back under its cap in one pass, amortized: it drops expired state, then every key
   * not written in the last `keep` writes (at most `keep` keys were, since each write stamps one slot),
   * so the next eviction is about a tenth of `maxKeys` inserts away and a check never scans the table.
   */
  private evict(now: number): void {
    const keep = Math.max(1, Math.floor(this.maxKeys * 0.9))
    const oldestKept = this.writes - keep
    for (const [key, slot] of this.entries) {
      if (slot.written <= oldestKept || this.expiresAt(slot.state, now) < now) this.entries.delete(key)
    }
  }
}

/** A rate strategy with its key table. */
class RateState {
  readonly table: KeyTable<unknown>
  constructor(readonly engine: RateEngine<unknown>, maxKeys: number) {
    this.table = new KeyTable(maxKeys, engine.expiresAt)
  }

  check(key: string, now: number, cost: number): DecisionData {
    const step = this.engine.check(this.table.get(key, now), now, cost)
    if (step.decision.allowed) this.table.set(key, step.state, now)
    return step.decision
  }

  peek(key: string, now: number): DecisionData {
    return this.engine.peek(this.table.get(key, now), now)
  }
}

type Compiled =
  | { readonly kind: "limiter"; readonly policy: LimiterPolicy; readonly rate: RateState }
  | {
    readonly kind: "meter"
    readonly policy: MeterPolicy
    readonly table: KeyTable<TokenBudget.State>
    readonly budget: TokenBudget.Options
  }
  | {
    readonly kind: "admitter"
    readonly policy: AdmitterPolicy
    readonly guard: Concurrency.Guard
    readonly rate: RateState | undefined
  }

const compile = (policy: Policy): Compiled => {
  switch (policy.kind) {
    case "limiter":
      return { kind: "limiter", policy, rate: new RateState(rateEngine(policy.strategy), policy.maxKeys) }
    case "meter": {
      const budget: TokenBudget.Options = { budget: policy.budget, windowMs: policy.windowMs }
      return { kind: "meter", policy, budget, table: new KeyTable(policy.maxKeys, TokenBudget.expiresAt) }
    }
    case "admitter":
      return {
        kind: "admitter",
        policy,
        guard: new Concurrency.Guard(policy.concurrency),
        rate: policy.rate === undefined ? undefined : new RateState(rateEngine(policy.rate), policy.maxKeys)
      }
  }
}

interface HeldLease {
  readonly policy: Extract<Compiled, { kind: "admitter" }>
  readonly acquiredAt: number
  expiresAt: number
}

const mintLeaseId = (): string => randomBytes(16).toString("hex")

/**
 * Builds the Memory door's `RateLimiter` service. The lease sweeper and the admission keeper live in
 * the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MemoryBackendOptions): Effect.Effect<RateLimiterService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const list = "policies" in options.policies ? options.policies.policies : options.policies
    const policies = new Map<string, Compiled>(list.map((p) => [p.name, compile(p)]))
    const names = Array.from(policies.keys())
    const ttlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS
    const leases = new Map<string, HeldLease>()

    const lookup = (name: string): Effect.Effect<Compiled, PolicyNotFound> => {
      const compiled = policies.get(name)
      return compiled === undefined
        ? Effect.fail(new PolicyNotFound({ policy: name, configured: names }))
        : Effect.succeed(compiled)
    }

    const unsupported = (policy: string, operation: OperationNotSupported["operation"], kind: string) =>
      Effect.fail(new OperationNotSupported({ policy, operation, reason: `a ${kind} policy` }))

    const limiterOf = (name: string, operation: OperationNotSupported["operation"]) =>
      Effect.flatMap(lookup(name), (compiled) =>
        compiled.kind === "limiter"
          ? Effect.succeed(compiled.rate)
          : unsupported(name, operation, compiled.kind))

    const argumentError = (argument: string, reason: string | undefined) =>
      reason === undefined ? undefined : new InvalidArgument({ argument, reason })

    const check = (name: string, key: string, cost = 1): Effect.Effect<Decision, RateLimiterError> => {
      const bad = argumentError("cost", Validate.costProblem(cost)) ?? argumentError("key", Validate.keyProblem(key))
      if (bad !== undefined) return Effect.fail(bad)
      const compiled = policies.get(name)
      if (compiled === undefined) return Effect.fail(new PolicyNotFound({ policy: name, configured: names }))
      if (compiled.kind !== "limiter") return unsupported(name, "check", compiled.kind)
      const rate = compiled.rate
      // The hot path: one clock read and the engine, no further Effect steps.
      return Effect.clockWith((clock) =>
        Effect.succeed(fromData(rate.check(key, clock.unsafeCurrentTimeMillis(), cost)))
      )
    }

    const checkMany = (
      name: string,
      keys: ReadonlyArray<string>,
      cost = 1
    ): Effect.Effect<ReadonlyArray<Decision>, RateLimiterError> => {
      const bad = argumentError("cost", Validate.costProblem(cost))
      if (bad !== undefined) return Effect.fail(bad)
      return Effect.zipRight(
        Validate.keys(keys),
        Effect.flatMap(
          limiterOf(name, "checkMany"),
          (rate) =>
            Effect.map(Clock.currentTimeMillis, (now) => keys.map((key) => fromData(rate.check(key, now, cost))))
        )
      )
    }

    const peek = (name: string, key: string): Effect.Effect<Decision, RateLimiterError> =>
      Effect.zipRight(
        Validate.key(key),
        Effect.flatMap(limiterOf(name, "peek"), (rate) =>
          Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.peek(key, now))))
      )

    const forecast = (name: string, key: string, cost = 1): Effect.Effect<Forecast, RateLimiterError> =>
      Effect.zipRight(
        Effect.zipRight(Validate.cost(cost), Validate.key(key)),
        Effect.flatMap(limiterOf(name, "forecast"), (rate) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            const data = rate.engine.forecast(rate.table.get(key, now), now, cost)
            return new Forecast(data, true)
          }))
      )

    const debit = (name: string, key: string, tokens = 1): Effect.Effect<Decision, RateLimiterError> =>
      Effect.zipRight(
        Effect.zipRight(Validate.cost(tokens, "tokens"), Validate.key(key)),
        Effect.flatMap(lookup(name), (compiled) => {
          if (compiled.kind !== "meter") return unsupported(name, "debit", compiled.kind)
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
          if (compiled.kind !== "admitter") return unsupported(name, "admit", compiled.kind)
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
 * The Memory door as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MemoryBackendOptions): Layer.Layer<RateLimiter> =>
  Layer.scoped(RateLimiter, make(options))

/**
 * The Memory door serving the policies of a config file (YAML or JSON, the reference server's format).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFile = (
  path: string,
  options: Omit<MemoryBackendOptions, "policies"> = {}
): Layer.Layer<RateLimiter, Config.ConfigError, FileSystem.FileSystem> =>
  Layer.scoped(RateLimiter, Effect.flatMap(Config.load(path), (policies) => make({ ...options, policies })))
