/**
 * The store under the one `RateLimiter` front: where limit state lives and how it is read and written,
 * and nothing else. A store never validates arguments, never looks a policy up by name for the caller
 * and never raises `PolicyNotFound` or `InvalidArgument`: the front (`RateLimiter.make`) does all of that,
 * in one order, for every door. A store only answers the primitives, each on an already-resolved policy
 * with arguments the front has checked.
 *
 * Two shapes:
 * - a **local** store knows its `PolicySet` (memory, Redis): the front binds each policy once
 *   (`limiter` / `meter` / `admitter`) and calls the bound operations;
 * - a **remote** store forwards calls by policy name to a server that knows the policies (the Service
 *   door): the front checks what it can locally and the server answers the rest.
 *
 * Wrappers (TwoTier, FailMode, the Monitor tap) take a local store and return one.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { Admission, Decision, Forecast } from "../Decision.js"
import type { Operation, RateLimiterError } from "../Errors.js"
import type { AdmitterPolicy, FairPolicy, LimiterPolicy, MeterPolicy, Policy } from "../Policy.js"
import type { PolicySet } from "../PolicySet.js"

/**
 * An operation a bound policy does not serve, with the reason the front reports in
 * `OperationNotSupported` (e.g. peek on a leased two-tier policy).
 *
 * @since 0.2.0
 * @category models
 */
export interface Unsupported {
  readonly _tag: "Unsupported"
  readonly reason: string
}

/**
 * Marks an operation as not served, with its reason.
 *
 * @since 0.2.0
 * @category constructors
 */
export const unsupported = (reason: string): Unsupported => ({ _tag: "Unsupported", reason })

/**
 * Whether a bound operation is served.
 *
 * @since 0.2.0
 * @category guards
 */
export const isUnsupported = (operation: unknown): operation is Unsupported =>
  typeof operation === "object" && operation !== null && "_tag" in operation && operation._tag === "Unsupported"

/**
 * The rate operations of one limiter policy. Keys are valid, `cost` is a whole number ≥ 1 and `keys`
 * is non-empty and within the batch cap: the front checked them.
 *
 * @since 0.2.0
 * @category models
 */
export interface BoundLimiter {
  readonly check: (key: string, cost: number) => Effect.Effect<Decision, RateLimiterError>
  readonly checkMany: (
    keys: ReadonlyArray<string>,
    cost: number
  ) => Effect.Effect<ReadonlyArray<Decision>, RateLimiterError>
  readonly peek: ((key: string) => Effect.Effect<Decision, RateLimiterError>) | Unsupported
  readonly forecast: ((key: string, cost: number) => Effect.Effect<Forecast, RateLimiterError>) | Unsupported
}

/**
 * The operations of one token-budget (meter) policy: the debit, and two reads of the same state that
 * spend nothing (since 0.3.0): `peek`, the decision a 1-token debit would get now with `remaining` = the
 * tokens left, and `forecast`, how many debits of `tokens` in a row would be admitted now and when the
 * budget returns (the window's end). `tokens` is a whole number ≥ 1: the front checked it.
 *
 * @since 0.2.0
 * @category models
 */
export interface BoundMeter {
  readonly debit: (key: string, tokens: number) => Effect.Effect<Decision, RateLimiterError>
  /** @since 0.3.0 */
  readonly peek: (key: string) => Effect.Effect<Decision, RateLimiterError>
  /** @since 0.3.0 */
  readonly forecast: (key: string, tokens: number) => Effect.Effect<Forecast, RateLimiterError>
}

/**
 * The check of one fair-escrow policy: `key` is the tenant. (The only operation the ThrottleKit core
 * serves on one: the front answers `OperationNotSupported` for checkMany, peek and forecast.)
 *
 * @since 0.3.0
 * @category models
 */
export interface BoundFair {
  readonly check: (key: string, cost: number) => Effect.Effect<Decision, RateLimiterError>
}

/**
 * What an admission carries besides its key: the rate-axis cost and two hints the backend may use
 * (all checked by the front: cost ≥ 1, hints finite and ≥ 0).
 *
 * @since 0.2.0
 * @category models
 */
export interface AcquireOptions {
  readonly cost: number
  readonly hold: number
  readonly value: number
}

/**
 * The admission of one admitter policy: decides and, when allowed, holds a slot under a fresh lease id.
 *
 * @since 0.2.0
 * @category models
 */
export interface BoundAdmitter {
  readonly acquire: (key: string, options: AcquireOptions) => Effect.Effect<Admission, RateLimiterError>
}

/**
 * The answer to a heartbeat: which leases are still held, which were already reclaimed, and when the
 * next beat must arrive (epoch-ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface HeartbeatResult {
  readonly live: ReadonlyArray<string>
  readonly reclaimed: ReadonlyArray<string>
  readonly nextDeadline: number
}

/**
 * The policy-free lease operations: a lease id names its admitter.
 *
 * @since 0.2.0
 * @category models
 */
export interface StoreLeases {
  /** The lease TTL in ms: a lease not renewed within it is reclaimed (as dropped). */
  readonly ttlMs: number
  /** Gives a slot back; `dropped` signals an overload. Unknown ids are ignored (idempotent). */
  readonly release: (leaseId: string, dropped: boolean) => Effect.Effect<void, RateLimiterError>
  /** Renews every listed lease that is still held. */
  readonly heartbeat: (leaseIds: ReadonlyArray<string>) => Effect.Effect<HeartbeatResult, RateLimiterError>
}

/**
 * The state of a concurrency guard whose ceiling is a fleet share (`distributedConcurrency`), as the
 * Monitor reports it: the ceiling admitted against now, the slots held, the share granted, the fleet's
 * global ceiling and live node count, and whether the node has fenced itself off.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetGuardState {
  readonly name: string
  readonly limit: number
  readonly inflight: number
  readonly share: number
  readonly lGlobal: number
  readonly nodes: number
  readonly fenced: boolean
}

/**
 * One dimension of a multi-check, resolved by the front: a limiter policy (a rate check of `cost`) or a
 * meter policy (a debit of `cost` tokens), a checked key, and a checked cost. The front never sends the
 * same (policy, key) twice in one multi-check.
 *
 * @since 0.3.0
 * @category models
 */
export interface StoreCheck {
  readonly policy: LimiterPolicy | MeterPolicy
  readonly key: string
  readonly cost: number
}

/**
 * A multi-check: every dimension decided at one instant, and either all consumed (every one allowed) or
 * none. One decision per dimension, in input order.
 *
 * @since 0.3.0
 * @category models
 */
export type CheckAll = (checks: ReadonlyArray<StoreCheck>) => Effect.Effect<ReadonlyArray<Decision>, RateLimiterError>

/**
 * The admin operations on one policy's keys (`RateLimiterAdmin`), each on a checked key and amount:
 * `units` a whole number ≥ 1, `untilMs` a block's end (epoch-ms in the store's clock, after now, as
 * `durationMs` from now). Each answers what a 1-unit peek of the key sees afterwards (`reset`: nothing).
 * An operation the store cannot serve for the policy is `Unsupported`, with its reason.
 *
 * @since 0.3.0
 * @category models
 */
export interface BoundAdmin {
  readonly reset: ((key: string) => Effect.Effect<void, RateLimiterError>) | Unsupported
  readonly penalize: ((key: string, units: number) => Effect.Effect<Decision, RateLimiterError>) | Unsupported
  readonly reward: ((key: string, units: number) => Effect.Effect<Decision, RateLimiterError>) | Unsupported
  readonly block: ((key: string, durationMs: number) => Effect.Effect<Decision, RateLimiterError>) | Unsupported
  readonly unblock: ((key: string) => Effect.Effect<Decision, RateLimiterError>) | Unsupported
}

/**
 * A store that knows its policies: the front binds each one once, when it is built.
 *
 * @since 0.2.0
 * @category models
 */
export interface LocalStore {
  readonly _tag: "Local"
  /** Names the backend in logs and errors ("memory", "redis"). */
  readonly backend: string
  /** The policies this store serves: the one validated set every wrapper reads. */
  readonly policies: PolicySet
  readonly limiter: (policy: LimiterPolicy) => BoundLimiter
  readonly meter: (policy: MeterPolicy) => BoundMeter
  readonly admitter: (policy: AdmitterPolicy) => BoundAdmitter
  /** @since 0.3.0 */
  readonly fair: (policy: FairPolicy) => BoundFair
  readonly leases: StoreLeases
  /**
   * The all-or-nothing multi-check (`CheckAll`), when this store serves it (absent: the front answers
   * `OperationNotSupported`).
   *
   * @since 0.3.0
   */
  readonly checkAll?: CheckAll | undefined
  /** The fleet-shared guards' state at `now` (epoch-ms), for the Monitor; absent when there are none. */
  readonly fleetGuards?: (now: number) => ReadonlyArray<FleetGuardState>
  /**
   * The admin operations on `policy`'s keys (`RateLimiterAdmin`); absent when the store serves none.
   * Wrappers pass it through: an admin writes the state the wrapped store keeps.
   *
   * @since 0.3.0
   */
  readonly admin?: (policy: Policy) => BoundAdmin
}

/**
 * A store whose server resolves policies by name (the Service door). Its operations are called with
 * checked arguments; the server answers `PolicyNotFound` / `OperationNotSupported` itself.
 *
 * @since 0.2.0
 * @category models
 */
export interface RemoteStore {
  readonly _tag: "Remote"
  /** Names the backend in logs and errors ("service"). */
  readonly backend: string
  readonly check: (policy: string, key: string, cost: number) => Effect.Effect<Decision, RateLimiterError>
  readonly checkMany: (
    policy: string,
    keys: ReadonlyArray<string>,
    cost: number
  ) => Effect.Effect<ReadonlyArray<Decision>, RateLimiterError>
  readonly peek: (policy: string, key: string) => Effect.Effect<Decision, RateLimiterError>
  readonly forecast: (policy: string, key: string, cost: number) => Effect.Effect<Forecast, RateLimiterError>
  readonly debit: (policy: string, key: string, tokens: number) => Effect.Effect<Decision, RateLimiterError>
  readonly acquire: (policy: string, key: string, options: AcquireOptions) => Effect.Effect<Admission, RateLimiterError>
  readonly leases: StoreLeases
  /**
   * Asks the server, consuming nothing, whether `policy` exists and serves `operation`. The front asks
   * only when an argument is bad, so that a bad call reports the same fault on every door (policy
   * first). `undefined` answers "cannot tell" (the argument's fault is then reported).
   */
  readonly probe: (
    policy: string,
    operation: Operation
  ) => Effect.Effect<RateLimiterError | undefined>
  /**
   * Asks the server, consuming nothing, whether `policy` is a rate limiter (it answers a `CheckMany`
   * with no keys), whose decisions report its capacity as `limit`. `false` when it is not, or when the
   * server cannot tell. `@since 0.3.0`
   */
  readonly isLimiter: (policy: string) => Effect.Effect<boolean>
}

/**
 * Any store.
 *
 * @since 0.2.0
 * @category models
 */
export type RateLimiterStore = LocalStore | RemoteStore

/**
 * The store tag: what a door's `layerStore` provides, what wrappers read and re-provide, and what
 * `RateLimiter.layer` builds the front over.
 *
 * @since 0.2.0
 * @category tags
 */
export class Store extends Context.Tag("throttlekit-effect/RateLimiterStore")<Store, RateLimiterStore>() {}

/**
 * A local store whose bound operations are `wrap`ped, policy by policy; the lease operations and the
 * rest pass through. The shape every local-store wrapper (FailMode, the Monitor tap, TwoTier) shares.
 * The multi-check (`checkAll`) passes through only when neither the limiters nor the meters are wrapped,
 * or when `wrap.checkAll` wraps it too: a multi-check that skipped a wrapper of its dimensions would
 * answer what the wrapped single operations do not.
 *
 * @since 0.2.0
 * @category combinators
 */
export const mapLocal = (
  inner: LocalStore,
  wrap: {
    readonly limiter?: (policy: LimiterPolicy, bound: BoundLimiter) => BoundLimiter
    readonly meter?: (policy: MeterPolicy, bound: BoundMeter) => BoundMeter
    readonly admitter?: (policy: AdmitterPolicy, bound: BoundAdmitter) => BoundAdmitter
    readonly fair?: (policy: FairPolicy, bound: BoundFair) => BoundFair
    readonly leases?: (leases: StoreLeases) => StoreLeases
    /** @since 0.3.0 */
    readonly checkAll?: (checkAll: CheckAll) => CheckAll
  }
): LocalStore => {
  const { admitter, fair, leases, limiter, meter } = wrap
  const checkAll = inner.checkAll === undefined
    ? undefined
    : wrap.checkAll !== undefined
    ? wrap.checkAll(inner.checkAll)
    : limiter === undefined && meter === undefined
    ? inner.checkAll
    : undefined
  return {
    _tag: "Local",
    backend: inner.backend,
    policies: inner.policies,
    limiter: limiter === undefined ? inner.limiter : (policy) => limiter(policy, inner.limiter(policy)),
    meter: meter === undefined ? inner.meter : (policy) => meter(policy, inner.meter(policy)),
    admitter: admitter === undefined ? inner.admitter : (policy) => admitter(policy, inner.admitter(policy)),
    fair: fair === undefined ? inner.fair : (policy) => fair(policy, inner.fair(policy)),
    leases: leases === undefined ? inner.leases : leases(inner.leases),
    ...(checkAll === undefined ? {} : { checkAll }),
    ...(inner.fleetGuards === undefined ? {} : { fleetGuards: inner.fleetGuards }),
    ...(inner.admin === undefined ? {} : { admin: inner.admin })
  }
}
