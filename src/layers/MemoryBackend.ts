/**
 * The Memory door: the `RateLimiter` service computed in this process by the pure engine, reading time
 * from Effect's `Clock` (so `TestClock` drives it). The embedded default: no Redis, no server.
 *
 * State lives in the door's key store (`memory/KeyStore.ts`), one table per policy, which only ever
 * forgets a key whose state reads exactly as a fresh key's (its window over, its bucket refilled, its
 * TAT reached), so eviction never changes a decision. A table keeps at most `maxKeys` keys while its
 * sweeps find at most nine tenths of `maxKeys` live; full of live keys, it grows past `maxKeys`
 * (`onFull: "grow"`, the default, logged once per policy as a warning) or denies new keys
 * (`onFull: "deny"`). Admissions hold
 * leases with a TTL (2000 ms by default) that are reclaimed as dropped when neither released nor renewed
 * in time: expired leases are swept on every acquire and heartbeat, so the backend runs no timer of its
 * own. A `distributedConcurrency` policy is a plain concurrency admitter here: one process is one node,
 * which holds the whole ceiling (its share is its own limit; the Monitor reports it so).
 *
 * Fair-escrow policies keep their tenants in a per-policy table of this process (a `federatedFairEscrow`
 * policy's region pool too: one process is every region there is).
 *
 * Besides `RateLimiter`, `layer` provides `Local`: the same key tables behind a synchronous `check` that
 * returns an `Either` (see `memory/Local.ts`), for loops where an Effect step per check costs more than
 * the check; `makeLocal` builds one without any Effect runtime. `layerFile` serves the policies of a file,
 * `layerConfig` options read from `Config`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { Admission, Forecast, fromData } from "../Decision.js"
import type { Admitter } from "../engine/admission.js"
import { BackendError } from "../Errors.js"
import { fiberNowMillis } from "../internal/fiberClock.js"
import { sameDefinition } from "../internal/sameDefinition.js"
import type { AdmitterPolicy, FairPolicy, LimiterPolicy, MeterPolicy, Policy } from "../Policy.js"
import * as PolicyFile from "../PolicyFile.js"
import type { PolicyError } from "../PolicySet.js"
import { PolicySet } from "../PolicySet.js"
import { type FrontOptions, make as makeFront, RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"
import {
  type BoundAdmin,
  type BoundAdmitter,
  type BoundFair,
  type BoundLimiter,
  type BoundMeter,
  type CheckAll,
  type FleetGuardState,
  type HeartbeatResult,
  type LocalStore,
  Store
} from "../services/RateLimiterStore.js"
import * as FairEscrow from "./fair/FairEscrow.js"
import type { FullTable, OnFull } from "./memory/FullTable.js"
import {
  checkAllAt,
  type Compiled,
  PolicyStore,
  type RateState,
  type StateCheck,
  type TableOptions
} from "./memory/KeyStore.js"
import { type LocalLimiter, makeLocalLimiter } from "./memory/Local.js"

export type {
  /** @since 0.2.0 */
  FullTable,
  /** @since 0.2.0 */
  OnFull
} from "./memory/FullTable.js"

export type {
  /** @since 0.1.0 */
  LocalCheck,
  /** @since 0.1.0 */
  LocalError,
  /** @since 0.1.0 */
  LocalLimiter
} from "./memory/Local.js"

/**
 * Options of the Memory door.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryBackendOptions extends FrontOptions {
  /**
   * The policies to serve: a `PolicySet` (from `PolicyFile.load`/`PolicyFile.parse`/`PolicySet.make`), or policies
   * written in code, which are validated like a file's (a bad one fails the layer with `PolicyError`).
   */
  readonly policies: PolicySet | Iterable<Policy>
  /** Lease TTL in ms (default 2000). */
  readonly leaseTtlMs?: number
  /**
   * What a policy's key table does once more than `maxKeys` keys are live (none can be forgotten
   * without changing a decision): `"grow"` (default) stores new keys past `maxKeys`; `"deny"` keeps
   * `maxKeys` as a hard ceiling and denies new keys until keys go fresh (see `OnFull`). Either way the
   * first time is logged once per policy, as a warning.
   */
  readonly onFull?: OnFull
}

/**
 * The default lease TTL: twice the usual 1 s heartbeat, so one missed beat is tolerated.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_LEASE_TTL_MS = 2000

/**
 * The compiled policy `policy` names, or `undefined` when it is not this store's (the front binds only
 * the store's own policies, so only a caller that bypasses it gets there).
 */
const compiledOf = <K extends Compiled["kind"]>(
  keys: PolicyStore,
  policy: Policy,
  kind: K
): Extract<Compiled, { kind: K }> | undefined => {
  const compiled = keys.get(policy.name)
  return compiled !== undefined && compiled.kind === kind ? compiled as Extract<Compiled, { kind: K }> : undefined
}

/** The fault of an operation bound to a policy this store was not built with. */
const foreign = (policy: Policy) =>
  Effect.fail(
    new BackendError({
      backend: "memory",
      code: "CONFIG",
      detail: `policy ${JSON.stringify(policy.name)} is not one of this store's ${policy.kind} policies`
    })
  )

/**
 * The Memory store over `keys` (the tables it shares with the synchronous `Local` door): every primitive
 * reads the calling fiber's `Clock` once and runs the engine.
 */
const storeOver = (
  policies: PolicySet,
  keys: PolicyStore,
  ttlMs: number,
  carried: Carried = { fairs: new Map() }
): LocalStore => {
  /** Every admitter's leases, by slot (shared by every generation of a reloaded store). */
  const leases = keys.leases

  const limiter = (policy: LimiterPolicy): BoundLimiter => {
    const rate = compiledOf(keys, policy, "limiter")?.rate
    if (rate === undefined) {
      return {
        check: () => foreign(policy),
        checkMany: () => foreign(policy),
        peek: () => foreign(policy),
        forecast: () => foreign(policy)
      }
    }
    return {
      // The hot path: one synchronous step reading the calling fiber's clock, then the engine.
      check: (key: string, cost: number) => Effect.sync(() => rate.check(key, fiberNowMillis(), cost)),
      checkMany: (batch: ReadonlyArray<string>, cost: number) =>
        Effect.map(Clock.currentTimeMillis, (now) => batch.map((key) => rate.check(key, now, cost))),
      peek: (key: string) => Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.peek(key, now))),
      forecast: (key: string, cost: number) =>
        Effect.map(Clock.currentTimeMillis, (now) => new Forecast(rate.forecast(key, now, cost), true))
    }
  }

  const meter = (policy: MeterPolicy): BoundMeter => {
    const compiled = compiledOf(keys, policy, "meter")
    if (compiled === undefined) {
      return { debit: () => foreign(policy), peek: () => foreign(policy), forecast: () => foreign(policy) }
    }
    const budget = compiled.budget
    return {
      debit: (key: string, tokens: number) =>
        Effect.map(Clock.currentTimeMillis, (now) => budget.check(key, now, tokens)),
      // Reads of the same cell (engine `tokenBudget.peek` / `forecast`): nothing is written or refreshed.
      peek: (key: string) => Effect.map(Clock.currentTimeMillis, (now) => fromData(budget.peek(key, now))),
      forecast: (key: string, tokens: number) =>
        Effect.map(Clock.currentTimeMillis, (now) => new Forecast(budget.forecast(key, now, tokens), true))
    }
  }

  const admitter = (policy: AdmitterPolicy): BoundAdmitter => {
    const engine = compiledOf(keys, policy, "admitter")?.admitter
    if (engine === undefined) return { acquire: () => foreign(policy) }
    return {
      acquire: (key: string, options: { readonly cost: number }) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const outcome = engine.admit(now, key, options.cost)
          return new Admission({
            decision: fromData(outcome.decision),
            leaseId: outcome.leaseId,
            leaseExpiresAt: outcome.expiresAt,
            bindingAxis: outcome.axis,
            policyDenied: false
          }, true)
        })
    }
  }

  const release = (id: string, dropped: boolean): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      leases.ownerOf(id)?.release(now, id, dropped)
    })

  const heartbeat = (ids: ReadonlyArray<string>): Effect.Effect<HeartbeatResult> =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const byOwner = new Map<Admitter, Array<string>>()
      for (const id of ids) {
        const owner = leases.ownerOf(id)
        if (owner === undefined) continue
        const group = byOwner.get(owner)
        if (group === undefined) byOwner.set(owner, [id])
        else group.push(id)
      }
      const live = new Set<string>()
      for (const [owner, group] of byOwner) {
        for (const id of owner.renew(now, group).live) live.add(id)
      }
      return {
        live: ids.filter((id) => live.has(id)),
        reclaimed: ids.filter((id) => !live.has(id)),
        nextDeadline: now + ttlMs
      }
    })

  // All or nothing in one synchronous step on the key tables (`checkAllAt`): one clock read, no yield
  // between the reads and the writes.
  const checkAll: CheckAll = (checks) => {
    const states: Array<StateCheck> = []
    for (const { cost, key, policy } of checks) {
      const compiled = keys.get(policy.name)
      const state = compiled?.kind === "limiter"
        ? compiled.rate
        : compiled?.kind === "meter"
        ? compiled.budget
        : undefined
      if (state === undefined) return foreign(policy)
      states.push({ state, key, cost })
    }
    return Effect.clockWith((clock) => Effect.succeed(checkAllAt(states, clock.unsafeCurrentTimeMillis())))
  }

  const admin = (policy: Policy): BoundAdmin => {
    const compiled = keys.get(policy.name)
    const rate = compiled === undefined
      ? undefined
      : compiled.kind === "limiter"
      ? compiled.rate
      : compiled.kind === "meter"
      ? compiled.budget
      : compiled.kind === "admitter"
      ? compiled.rate
      : undefined
    if (rate === undefined) {
      const fail = () => foreign(policy)
      return { reset: fail, penalize: fail, reward: fail, block: fail, unblock: fail }
    }
    return adminOver(rate)
  }

  const fairs = fairEscrows(policies, carried.fairs)
  const fair = (policy: FairPolicy): BoundFair => fairs.get(policy.name) ?? { check: () => foreign(policy) }

  // A distributedConcurrency policy here is one node holding the whole ceiling: its share is its own limit.
  const fleet = policies.policies.filter((policy) => policy.kind === "admitter" && policy.distributed !== undefined)
  const fleetGuards = (): ReadonlyArray<FleetGuardState> =>
    fleet.flatMap((policy) => {
      const guard = compiledOf(keys, policy, "admitter")?.admitter.guard
      if (guard === undefined) return []
      const limit = guard.limit
      return [{
        name: policy.name,
        limit,
        inflight: guard.inflight,
        share: limit,
        lGlobal: limit,
        nodes: 1,
        fenced: false
      }]
    })
  return {
    _tag: "Local",
    backend: "memory",
    policies,
    limiter,
    meter,
    admitter,
    fair,
    leases: { ttlMs, release, heartbeat },
    checkAll,
    ...(fleet.length === 0 ? {} : { fleetGuards }),
    admin
  }
}

/** The admin operations on one key table, at the `Clock`'s now (the table's own clock). */
const adminOver = (rate: RateState): BoundAdmin => ({
  reset: (key) => Effect.sync(() => rate.reset(key)),
  penalize: (key, units) => Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.penalize(key, now, units))),
  reward: (key, units) => Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.reward(key, now, units))),
  block: (key, durationMs) =>
    Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.block(key, now, now + durationMs))),
  unblock: (key) => Effect.map(Clock.currentTimeMillis, (now) => fromData(rate.unblock(key, now)))
})

/**
 * The fair-escrow policies' checks, by name: tenants in this process; a federated one's region pool too
 * (one pool per policy: a single process is every region there is).
 */
const fairEscrows = (
  policies: PolicySet,
  previous: Map<string, { readonly policy: FairPolicy; readonly bound: BoundFair }>
): ReadonlyMap<string, BoundFair> => {
  const fairs = new Map<string, BoundFair>()
  const kept = new Map<string, { readonly policy: FairPolicy; readonly bound: BoundFair }>()
  for (const policy of policies) {
    if (policy.kind !== "fair") continue
    const before = previous.get(policy.name)
    const federation = policy.federation
    const bound = before !== undefined && sameDefinition(before.policy, policy)
      ? before.bound
      : federation === undefined
      ? FairEscrow.local(policy)
      : FairEscrow.federated(
        policy,
        federation.region,
        FairEscrow.memoryPool(policy.fairEscrow.limit, policy.fairEscrow.windowMs)
      )
    fairs.set(policy.name, bound)
    kept.set(policy.name, { policy, bound })
  }
  // The next generation starts from these: a removed policy's tenants are dropped with it.
  previous.clear()
  for (const [name, entry] of kept) previous.set(name, entry)
  return fairs
}

/**
 * What every generation of one Memory store shares besides its key store's lease table (through which a
 * lease held on a policy's old definition is still released and renewed there): the fair-escrow tables
 * by policy.
 */
interface Carried {
  readonly fairs: Map<string, { readonly policy: FairPolicy; readonly bound: BoundFair }>
}

/** The warning a table full of live keys logs, once per policy. */
const logFullTable = (event: FullTable): Effect.Effect<void> =>
  Effect.logWarning(
    `the key table of policy ${JSON.stringify(event.policy)} holds ${event.keys} keys, maxKeys ${event.maxKeys}, ` +
      (event.onFull === "grow"
        ? "none of which can be forgotten without changing a decision: it grows past maxKeys (onFull: \"grow\")"
        : "none of which can be forgotten without changing a decision: new keys are denied until keys go fresh " +
          "(onFull: \"deny\")")
  ).pipe(Effect.annotateLogs({ policy: event.policy, maxKeys: event.maxKeys, keys: event.keys, onFull: event.onFull }))

/** The store and its key tables, for `policies` (validated here when written in code). */
const build = (options: MemoryBackendOptions) =>
  Effect.gen(function*() {
    const policies = yield* PolicySet.from(options.policies)
    // A full table is found inside a check, in plain code: its warning runs on the building fiber's runtime.
    const runtime = yield* Effect.runtime<never>()
    const tables: TableOptions = {
      onFull: options.onFull ?? "grow",
      onTableFull: (event) => Runtime.runSync(runtime, logFullTable(event))
    }
    const ttlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS
    const keys = new PolicyStore(policies, ttlMs, tables)
    const carried: Carried = { fairs: new Map() }
    return { carried, keys, ttlMs, store: storeOver(policies, keys, ttlMs, carried) }
  })

/**
 * A Memory store that can take a new policy set (a live reload), and its first generation.
 *
 * @since 0.3.0
 * @category models
 */
export interface ReloadableStore {
  /** The store of the policies it was built with. */
  readonly store: LocalStore
  /**
   * The store of `policies`, on the same state: a policy whose definition is unchanged (deep-equal) keeps
   * its key table, admitter and fair-escrow tenants; a changed or added one starts fresh (every key as
   * new); a removed one is not served. Leases held on an old definition (changed or removed) stay valid
   * there until released, renewed away or reclaimed at their TTL, and do not count against the new
   * definition's ceiling. Earlier generations keep working for the calls in flight on them.
   */
  readonly reload: (policies: PolicySet) => LocalStore
}

/**
 * The Memory store of `makeStore`, reloadable (see `ReloadableStore`): what the server's live reload
 * builds on.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeReloadableStore = (options: MemoryBackendOptions): Effect.Effect<ReloadableStore, PolicyError> =>
  Effect.map(build(options), ({ carried, keys, store, ttlMs }) => {
    let current = keys
    return {
      store,
      reload: (policies) => {
        current = current.next(policies)
        return storeOver(policies, current, ttlMs, carried)
      }
    }
  })

/**
 * The Memory store: the primitives on this process's key tables, for the front (`RateLimiter.make`) or
 * a wrapper (TwoTier, FailMode, the Monitor tap) to take.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore = (options: MemoryBackendOptions): Effect.Effect<LocalStore, PolicyError> =>
  Effect.map(build(options), ({ store }) => store)

/**
 * Builds the Memory door's `RateLimiter` service (the front over the Memory store). The admission
 * keeper lives in the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: MemoryBackendOptions
): Effect.Effect<RateLimiterService, PolicyError, Scope.Scope> =>
  Effect.flatMap(makeStore(options), (store) => makeFront(store, options))

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
  /** The policies to serve, validated (`PolicySet.validate` or `PolicySet.make`). */
  readonly policies: PolicySet
  /** The clock, in epoch-ms (default `Date.now`). */
  readonly now?: () => number
  /** What a key table full of live keys does (`"grow"` by default; see `OnFull`). */
  readonly onFull?: OnFull
  /** Called once per policy, the first time its table grows past `maxKeys` or denies a new key. */
  readonly onTableFull?: (event: FullTable) => void
}

/**
 * A standalone synchronous Memory limiter for code without an Effect runtime: its own key tables, read
 * with `now` (`Date.now` by default). It takes a validated `PolicySet` (`PolicySet.validate` builds one
 * without a runtime, as an `Either`). To share state with a `RateLimiter` service, take `Local` from
 * `layer` instead.
 *
 * @example
 * ```ts
 * import { Either } from "effect"
 * import { MemoryBackend, PolicySet } from "throttlekit-effect"
 *
 * // No Effect runtime: the policies are validated as an Either, and every check answers synchronously.
 * const policies = Either.getOrThrow(PolicySet.validate([{
 *   kind: "limiter",
 *   name: "api",
 *   prefix: "api",
 *   maxKeys: 10_000,
 *   strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }
 * }]))
 *
 * const local = MemoryBackend.makeLocal({ policies })
 * const check = Either.getOrThrow(local.limiter("api")) // the policy looked up once
 *
 * const allowed = ["a", "b", "a", "a", "a", "a", "a"].filter((key) =>
 *   Either.match(check(key), { onLeft: () => false, onRight: (decision) => decision.allowed })
 * )
 * console.log(allowed.length) // 6: key "a" had a burst of 5
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLocal = (options: LocalOptions): LocalLimiter =>
  makeLocalLimiter(
    new PolicyStore(options.policies, DEFAULT_LEASE_TTL_MS, {
      onFull: options.onFull ?? "grow",
      onTableFull: options.onTableFull
    }),
    options.now ?? Date.now
  )

/** Both doors over one store; the synchronous one reads the building fiber's `Clock`. */
const makeDoors = (
  options: MemoryBackendOptions
): Effect.Effect<Context.Context<RateLimiter | Local>, PolicyError, Scope.Scope> =>
  Effect.gen(function*() {
    const { keys, store } = yield* build(options)
    const service = yield* makeFront(store, options)
    const clock = yield* Effect.clock
    const local = makeLocalLimiter(keys, () => clock.unsafeCurrentTimeMillis())
    return Context.add(Context.make(RateLimiter, service), Local, local)
  })

/**
 * The Memory door as a layer: the `RateLimiter` service and, on the same state, its synchronous
 * `Local` limiter. Policies written in code are validated here: a bad one fails the layer with
 * `PolicyError`, as a bad file would.
 *
 * @example
 * ```ts
 * import { Effect, Either } from "effect"
 * import { MemoryBackend, RateLimiter } from "throttlekit-effect"
 *
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 10_000,
 *     strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }
 *   }]
 * })
 *
 * // Both doors, on one state: the `RateLimiter` service, and `Local` for synchronous checks in hot loops.
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter
 *   const local = yield* MemoryBackend.Local
 *   yield* limiter.check("api", "alice")
 *   const peeked = local.peek("api", "alice") // an Either: a bad key or policy is a Left, never a throw
 *   return Either.map(peeked, (decision) => decision.remaining)
 * })
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // { _id: "Either", _tag: "Right", right: 4 }
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MemoryBackendOptions): Layer.Layer<RateLimiter | Local, PolicyError> =>
  Layer.scopedContext(makeDoors(options))

/**
 * The Memory store as a layer, for wrappers (TwoTier, FailMode, the Monitor tap) and `RateLimiter.layer`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (options: MemoryBackendOptions): Layer.Layer<Store, PolicyError> =>
  Layer.effect(Store, makeStore(options))

/**
 * The Memory door serving the policies of a config file (YAML or JSON, the reference server's format),
 * with its `Local` limiter like `layer`. A file that cannot be read or decoded fails the layer with
 * `PolicyError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { limit, MemoryBackend } from "throttlekit-effect"
 *
 * // Policies from a YAML or JSON file (the reference server's format). A file that cannot be read, or a bad
 * // field in it, fails the layer with `PolicyError` naming the field and its line.
 * export const main = limit("api", "user-42").pipe(Effect.provide(MemoryBackend.layerFile("policies.yaml")))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFile = (
  path: string,
  options: Omit<MemoryBackendOptions, "policies"> = {}
): Layer.Layer<RateLimiter | Local, PolicyError> =>
  Layer.scopedContext(Effect.flatMap(PolicyFile.load(path), (policies) => makeDoors({ ...options, policies })))

/**
 * The Memory door configured from `Config`: the options of `layer`, each a `Config` (`Config.succeed`
 * for a fixed value), e.g. `layerConfig({ policies: Config.succeed(policies), leaseTtlMs:
 * Config.integer("LEASE_TTL_MS") })`. A missing or invalid value fails the layer with Effect's
 * `ConfigError`; then it is built as `layer` builds it, with its `Local` limiter. A bad policy fails it
 * with this package's `PolicyError` (its own tag, so `catchTag` tells the two apart).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<MemoryBackendOptions>
): Layer.Layer<RateLimiter | Local, EffectConfigError.ConfigError | PolicyError> =>
  Layer.scopedContext(Effect.flatMap(Config.unwrap(config), makeDoors))
