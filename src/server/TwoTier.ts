/**
 * Two-tier and federated policies over any local store: a store wrapper that answers the checks of
 * `twoTier:` and `federated:` policies itself and hands every other primitive to the store below it
 * (memory or Redis). The front (`RateLimiter.make`) sits on top, so arguments are checked, policies
 * resolved and faults raised there, as on every door. The server wraps its store with it; an
 * application can do the same (`TwoTier.layer` between a door's `layerStore` and `RateLimiter.layer`).
 *
 * - `twoTier` `leased`: this process keeps local (L1) credits per key, leased in batches of `batch` from
 *   the shared (L2) budget, and answers `check` from them (see `LeasedCredits`). On a windowed strategy
 *   the L2 budget is the `Coordinator` at the policy's own store key (`prefix:key`), so its state is the
 *   strategy's state and a plain check of the same key shares it; grants are partial when little is left.
 *   On any other strategy the L2 lease is a check of `batch` units on the store below (all or nothing, as
 *   the ThrottleKit core does). `windowCoupled` discards credits at the window boundary: the fleet then
 *   admits at most `limit` per window, however many servers lease. With `lowWater > 0`, a key whose
 *   credits drop to `lowWater` or below refreshes in the background (one refresh per key at a time; the
 *   check that crossed does not wait), so a steady key rarely waits for the store; a grant that lands
 *   after its window ended dies with it, so the per-window bound is unchanged. The refresh fibers live in
 *   the wrapper's scope; with a coordinator that offers `reserveCallback` (the Redis one, on the Redis
 *   clock) a background refresh is that callback and costs no fiber.
 * - `twoTier` `strict`: every check goes to the store (nothing is intercepted).
 * - `twoTier` `cached-deny`: a key's denial is remembered until its `retryAfterMs` and answered locally,
 *   so a flood on a blocked key costs the store nothing; allowed traffic stays exact.
 * - `federated`: `check(policy, key)` leases from the global budget of domain `key` (window-coupled, in
 *   batches of `federated.batch`); `Fleet.Reserve` leases from the same budgets, so servers and remote
 *   clients share one per-window `limit` per domain. The budget lives at `federated.prefix:domain`, kept as
 *   the ThrottleKit core's coordinator keeps it (a hash: `budget` left, `expiresAt`), so a core server on
 *   the same Redis draws from the same budget.
 *
 * `peek` and `forecast` on a leased, cached-deny or federated policy are not served (the front answers
 * `OperationNotSupported`: the local credits are not the budget's state), as on the reference server.
 * With `returnIdleAfterMs`, a key that goes longer than that without a check loses its local credits (as
 * on the ThrottleKit core: dropped, not written back; the budget heals as it refills), at its next check
 * and, for keys never checked again, by a sweep every `returnIdleAfterMs` in the wrapper's scope; its next
 * check leases afresh.
 * Per-policy tables are bounded by the policy's `maxKeys` (the oldest key's credits are dropped first:
 * dropping credits never loosens a bound). A dropped key's background refresh still lands, in the dropped
 * holder only: the key is not put back, and its next check starts a new holder that leases afresh.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import {
  Coordinator,
  type CoordinatorService,
  federatedKey,
  federatedLease,
  type Grant
} from "../coordinator/Coordinator.js"
import { isWindowed } from "../coordinator/reserve.js"
import { type Decision, type DecisionData, fromData } from "../Decision.js"
import { OperationNotSupported, type RateLimiterError } from "../Errors.js"
import * as LeasedCredits from "../fleet/LeasedCredits.js"
import { setBounded } from "../internal/boundedMap.js"
import { sameDefinition } from "../internal/sameDefinition.js"
import { type LimiterPolicy, type Policy, reportedLimit, storeKey } from "../Policy.js"
import {
  type BoundLimiter,
  type CheckAll,
  type LocalStore,
  type RateLimiterStore,
  Store,
  unsupported
} from "../services/RateLimiterStore.js"

/** What the wrapper does for one intercepted policy (and, with `returnIdleAfterMs`, its idle sweep). */
interface Handler {
  readonly check: (key: string, cost: number) => Effect.Effect<Decision, RateLimiterError>
  readonly why: string
  readonly idle?: { readonly everyMs: number; readonly sweep: (now: number) => void }
}

/** A key's credits and when it was last checked. */
interface Held {
  readonly credits: LeasedCredits.LeasedCredits
  lastUse: number
}

/** A bounded per-key table: past `maxKeys` entries, the oldest written is dropped. */
class Table<A> {
  private readonly entries = new Map<string, A>()
  constructor(private readonly maxKeys: number) {}

  getOrCreate(key: string, create: (key: string) => A): A {
    let entry = this.entries.get(key)
    if (entry === undefined) {
      entry = create(key)
      this.set(key, entry)
    }
    return entry
  }

  find(key: string): A | undefined {
    return this.entries.get(key)
  }

  set(key: string, entry: A): void {
    setBounded(this.entries, key, entry, this.maxKeys)
  }

  delete(key: string): void {
    this.entries.delete(key)
  }

  /** Drops every entry `stale` picks. */
  dropWhere(stale: (entry: A) => boolean): void {
    for (const [key, entry] of this.entries) if (stale(entry)) this.entries.delete(key)
  }
}

/** How a leased handler refreshes a key's credits: in a fiber, and (a store that offers it) without one. */
interface Lease {
  readonly reserve: (key: string, wants: number) => Effect.Effect<LeasedCredits.LeaseGrant, RateLimiterError>
  readonly reserveCallback?: (
    key: string,
    wants: number,
    clock: Clock.Clock,
    done: (exit: Exit.Exit<LeasedCredits.LeaseGrant, RateLimiterError>) => void
  ) => void
}

/** Leased credits per key, refreshed through `lease`. */
const leasedHandler = (
  policy: LimiterPolicy,
  options: {
    readonly batch: number
    readonly lowWater: number
    readonly windowCoupled: boolean
    readonly why: string
    readonly background: LeasedCredits.Background
    /** Drop a key's credits once it went longer than this without a check. */
    readonly returnIdleAfterMs?: number | undefined
  },
  lease: Lease
): Handler => {
  const limit = reportedLimit(policy.strategy)
  const table = new Table<LeasedCredits.LeasedCredits>(policy.maxKeys)
  const reserveCallback = lease.reserveCallback
  const create = (key: string) =>
    LeasedCredits.unsafeMake({
      limit,
      batch: options.batch,
      lowWater: options.lowWater,
      background: options.background,
      windowCoupled: options.windowCoupled,
      name: `policy ${JSON.stringify(policy.name)}`,
      reserve: (wants) => lease.reserve(key, wants),
      ...(reserveCallback === undefined
        ? {}
        : { reserveCallback: (wants, clock, done) => reserveCallback(key, wants, clock, done) })
    })
  // The wrapper validated the cost already.
  const idleMs = options.returnIdleAfterMs
  if (idleMs === undefined) {
    return { why: options.why, check: (key, cost) => table.getOrCreate(key, create).checkValid(cost) }
  }
  // As the ThrottleKit core: a key idle for more than `idleMs` loses its credits (its next check leases
  // afresh), at its next check and, for keys never checked again, by a sweep every `idleMs`.
  const held = new Table<Held>(policy.maxKeys)
  const idle = (entry: Held, now: number) => now - entry.lastUse > idleMs
  return {
    why: options.why,
    check: (key, cost) =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        let entry = held.find(key)
        if (entry === undefined || idle(entry, now)) held.set(key, entry = { credits: create(key), lastUse: now })
        else entry.lastUse = now
        return entry.credits.checkValid(cost)
      }),
    idle: { everyMs: idleMs, sweep: (now) => held.dropWhere((entry) => idle(entry, now)) }
  }
}

/** A coordinator grant as a lease grant: a refusal waits for the boundary (`now` by the checking fiber's clock). */
const leaseGrantOf = (grant: Grant, now: number): LeasedCredits.LeaseGrant =>
  grant.granted > 0
    ? { granted: grant.granted, expiresAt: grant.expiresAt, retryAfterMs: 0 }
    : { granted: 0, expiresAt: grant.expiresAt, retryAfterMs: Math.max(1, Math.ceil(grant.expiresAt - now)) }

/**
 * Coordinator reservations as leases. A stopped lease (the wrapper's scope closed) starts no reservation
 * outside a fiber: it reports an interruption, as a fiber in the closed scope would.
 */
const fromCoordinator = (
  coordinator: CoordinatorService,
  policy: LimiterPolicy,
  budgetKey: (key: string) => string,
  lifetime: { readonly closed: boolean }
): Lease => {
  const strategy = policy.strategy
  if (!isWindowed(strategy)) {
    // PolicySet only lets windowed strategies reach here; keep the type honest anyway.
    const notWindowed = new OperationNotSupported({ policy: policy.name, operation: "check", reason: "not windowed" })
    return { reserve: () => Effect.fail(notWindowed) }
  }
  const reserve = (key: string, wants: number) =>
    Effect.flatMap(coordinator.reserve(strategy, budgetKey(key), wants), (grant) =>
      grant.granted > 0
        ? Effect.succeed(leaseGrantOf(grant, 0))
        : Effect.map(Clock.currentTimeMillis, (now) => leaseGrantOf(grant, now)))
  const reserveCallback = coordinator.reserveCallback
  if (reserveCallback === undefined) return { reserve }
  return {
    reserve,
    reserveCallback: (key, wants, clock, done) => {
      if (lifetime.closed) return done(Exit.interrupt(FiberId.none))
      reserveCallback(
        strategy,
        budgetKey(key),
        wants,
        (exit) => done(Exit.map(exit, (grant) => leaseGrantOf(grant, clock.unsafeCurrentTimeMillis())))
      )
    }
  }
}

/**
 * Leases of a federated policy's global budget (the strategy's limit per window), kept in the ThrottleKit
 * core coordinator's layout (`federatedLease`), so a core server on the same Redis shares it.
 */
const fromFederated = (
  coordinator: CoordinatorService,
  policy: LimiterPolicy,
  budgetKey: (key: string) => string
): Lease => {
  const strategy = policy.strategy
  const budget = { limit: reportedLimit(strategy), windowMs: isWindowed(strategy) ? strategy.windowMs : 1 }
  return {
    reserve: (key, wants) =>
      Effect.flatMap(federatedLease(coordinator, budget, budgetKey(key), wants), (grant) =>
        grant.granted > 0
          ? Effect.succeed(leaseGrantOf(grant, 0))
          : Effect.map(Clock.currentTimeMillis, (now) => leaseGrantOf(grant, now)))
  }
}

/** An all-or-nothing lease: a check of `wants` units on the store below. */
const fromStore = (inner: BoundLimiter): Lease => ({
  reserve: (key, wants) =>
    Effect.map(inner.check(key, wants), (decision) => ({
      granted: decision.allowed ? wants : 0,
      expiresAt: decision.resetAt,
      retryAfterMs: decision.allowed ? 0 : decision.retryAfterMs
    }))
})

/** Remembers each key's denial until its retry time. */
const cachedDenyHandler = (inner: BoundLimiter, policy: LimiterPolicy): Handler => {
  const denials = new Table<{ readonly until: number; readonly decision: DecisionData }>(policy.maxKeys)
  return {
    why: "a cached-deny two-tier policy",
    check: (key, cost) =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const cached = denials.find(key)
        if (cached !== undefined && now < cached.until) {
          return Effect.succeed(fromData({ ...cached.decision, retryAfterMs: Math.ceil(cached.until - now) }))
        }
        return Effect.tap(inner.check(key, cost), (decision) =>
          Effect.sync(() => {
            if (decision.allowed || decision.retryAfterMs <= 0) denials.delete(key)
            else denials.set(key, { until: now + decision.retryAfterMs, decision })
          }))
      })
  }
}

/** The handler of `policy` when this wrapper answers its checks, else `undefined` (the store below does). */
const handlerOf = (
  policy: Policy,
  inner: LocalStore,
  coordinator: CoordinatorService,
  background: LeasedCredits.Background,
  lifetime: { readonly closed: boolean }
): Handler | undefined => {
  if (policy.kind !== "limiter") return undefined
  if (policy.federated !== undefined) {
    const prefix = policy.federated.prefix
    return leasedHandler(
      policy,
      { batch: policy.federated.batch, lowWater: 0, windowCoupled: true, why: "a federated policy", background },
      fromFederated(coordinator, policy, (domain) => federatedKey(prefix, domain))
    )
  }
  const twoTier = policy.twoTier
  if (twoTier === undefined || twoTier.mode === "strict") return undefined
  if (twoTier.mode === "cached-deny") return cachedDenyHandler(inner.limiter(policy), policy)
  return leasedHandler(
    policy,
    {
      batch: twoTier.batch,
      lowWater: twoTier.lowWater,
      windowCoupled: twoTier.windowCoupled,
      why: "a leased two-tier policy",
      background,
      returnIdleAfterMs: twoTier.returnIdleAfterMs
    },
    isWindowed(policy.strategy)
      ? fromCoordinator(coordinator, policy, (key) => storeKey(policy.prefix, key), lifetime)
      : fromStore(inner.limiter(policy))
  )
}

/** A handler as the bound limiter of its policy: checks answered here, peek and forecast not served. */
const boundOf = (handler: Handler): BoundLimiter => {
  const notServed = unsupported(`${handler.why} answers from leased credits`)
  return {
    check: handler.check,
    checkMany: (keys, cost) => Effect.forEach(keys, (key) => handler.check(key, cost)),
    peek: notServed,
    forecast: notServed
  }
}

/**
 * Wraps `inner`: the checks of its two-tier and federated policies (read from `inner.policies`) are
 * answered here, every other primitive is `inner`'s. Each intercepted policy gets its tables once, here,
 * whatever asks for its bound limiter. Background lease refreshes (`twoTier.lowWater`) run in the scope
 * and are interrupted when it closes (one sent without a fiber, through the coordinator's
 * `reserveCallback`, lands when its answer comes; none is sent after the close).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  inner: LocalStore,
  coordinator: CoordinatorService
): Effect.Effect<LocalStore, never, Scope.Scope> => Effect.flatMap(makeReloadable(coordinator), (wrap) => wrap(inner))

/** An intercepted policy's definition, its bound limiter and its idle sweep (if any). */
interface Intercepted {
  readonly policy: Policy
  readonly bound: BoundLimiter
  readonly sweeper: Fiber.RuntimeFiber<unknown> | undefined
}

/**
 * The wrapper for a store whose policies are reloaded: each call wraps one generation of the store
 * below. A two-tier or federated policy whose definition did not change keeps its tables (the local
 * credits and cached denials of its keys) from the generation before; a changed or added one gets fresh
 * tables (its keys lease afresh: dropping credits never loosens a bound); a removed one's idle sweep
 * stops. Background refreshes and idle sweeps run in the scope of `makeReloadable`, not a generation's.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeReloadable = (
  coordinator: CoordinatorService
): Effect.Effect<(inner: LocalStore) => Effect.Effect<LocalStore>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const background = yield* LeasedCredits.makeBackground
    const lifetime = { closed: false }
    yield* Effect.addFinalizer(() => Effect.sync(() => lifetime.closed = true))
    let kept = new Map<string, Intercepted>()
    return (inner) =>
      Effect.gen(function*() {
        const next = new Map<string, Intercepted>()
        for (const policy of inner.policies) {
          const before = kept.get(policy.name)
          if (before !== undefined && sameDefinition(before.policy, policy)) {
            next.set(policy.name, before)
            continue
          }
          const handler = handlerOf(policy, inner, coordinator, background, lifetime)
          if (handler === undefined) continue
          const idle = handler.idle
          const sweeper = idle === undefined ? undefined : yield* Effect.forkIn(
            Effect.repeat(
              Effect.clockWith((clock) => Effect.sync(() => idle.sweep(clock.unsafeCurrentTimeMillis()))),
              Schedule.spaced(idle.everyMs)
            ),
            scope
          )
          next.set(policy.name, { policy, bound: boundOf(handler), sweeper })
        }
        for (const [name, before] of kept) {
          if (next.get(name) !== before && before.sweeper !== undefined) yield* Fiber.interruptFork(before.sweeper)
        }
        kept = next
        if (next.size === 0) return inner
        // A multi-check through the inner store would skip a leased policy's local credits: it serves only
        // dimensions none of which is leased.
        const innerAll = inner.checkAll
        const checkAll: CheckAll | undefined = innerAll === undefined ? undefined : (checks) => {
          const leased = checks.find((check) => next.has(check.policy.name))
          return leased === undefined ? innerAll(checks) : Effect.fail(
            new OperationNotSupported({
              policy: leased.policy.name,
              operation: "checkAll",
              reason: "a leased (two-tier) policy: its local credits are not the store's state"
            })
          )
        }
        return {
          ...inner,
          limiter: (policy) => next.get(policy.name)?.bound ?? inner.limiter(policy),
          ...(checkAll === undefined ? {} : { checkAll })
        }
      })
  })

/**
 * The wrapper as a layer over the `Store` below it and a `Coordinator`, under the front, e.g.
 * `RateLimiter.layer().pipe(Layer.provide(TwoTier.layer), Layer.provide(MemoryBackend.layerStore({ policies })), Layer.provide(MemoryCoordinator.layer()))`.
 * A remote store (the Service door) passes through unchanged: its server applies its own two tiers.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Store, never, Store | Coordinator> = Layer.scoped(
  Store,
  Effect.flatMap(
    Effect.zip(Store, Coordinator),
    ([inner, coordinator]): Effect.Effect<RateLimiterStore, never, Scope.Scope> =>
      inner._tag === "Local" ? make(inner, coordinator) : Effect.succeed(inner)
  )
)
