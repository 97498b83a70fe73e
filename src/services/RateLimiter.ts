/**
 * The `RateLimiter` service: one interface for every axis (rate, cost, concurrency) and every door
 * (memory, Redis, gRPC), and its one implementation, the front (`make`). A program written against it
 * runs unchanged on any layer.
 *
 * The front validates every call in one order — the policy (unknown: `PolicyNotFound`; the wrong kind
 * for the operation: `OperationNotSupported`; a name over 256 UTF-8 bytes, which no policy can have:
 * `InvalidArgument`), then the key, then the cost / tokens / hints (`InvalidArgument`), then a cost
 * above what the policy can ever admit (`CapacityExceeded`, unless `overCapacity: "deny"`) — before
 * the store is touched, so every door raises the same fault for the same bad call and a rejected call
 * changes nothing. It runs the scoped `admit` (held until the scope closes). The doors are stores
 * (`RateLimiterStore`): primitives on resolved policies only.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryBackend, RateLimiter } from "throttlekit-effect"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter
 *   const decision = yield* limiter.check("api", "user-42") // a Decision, allowed or not
 *   return decision.allowed ? "served" : `429, retry in ${decision.retryAfterMs} ms`
 * })
 *
 * // The in-process door; RedisBackend.layer or ServiceBackend.layer serve the same program.
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 10_000,
 *     strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 } // 5 per second per key
 *   }]
 * })
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // "served"
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import {
  type Admission,
  type Decision,
  type Forecast,
  type MultiDecision,
  multiDecisionOf,
  shadowOf
} from "../Decision.js"
import {
  CapacityExceeded,
  InvalidArgument,
  type Operation,
  OperationNotSupported,
  PolicyNotFound,
  RateLimited,
  type RateLimiterError
} from "../Errors.js"
import { type KeeperOptions, makeKeeper } from "../internal/keeper.js"
import * as Shadow from "../internal/shadow.js"
import { makeWaitLines, type Reading } from "../internal/waitLine.js"
import {
  capacity,
  isShadow,
  type LimiterPolicy,
  maxCost,
  type MeterPolicy,
  type Policy,
  type Strategy
} from "../Policy.js"
import type { PolicySet } from "../PolicySet.js"
import * as Validate from "../Validate.js"
import {
  type AcquireOptions,
  type BoundAdmitter,
  type BoundFair,
  type BoundLimiter,
  type BoundMeter,
  type CheckAll,
  type HeartbeatResult,
  isUnsupported,
  type LocalStore,
  type RateLimiterStore,
  type RemoteStore,
  Store,
  type StoreCheck
} from "./RateLimiterStore.js"

export type {
  /** @since 0.1.0 */
  HeartbeatResult
} from "./RateLimiterStore.js"

/**
 * Options of an admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface AdmitOptions {
  /** Rate-axis cost of a unified admitter (default 1). */
  readonly cost?: number
  /** Expected hold in ms, forwarded to the backend as a hint (default 0). */
  readonly hold?: number
  /** Value of the request, forwarded to the backend as a hint (default 0). */
  readonly value?: number
  /**
   * Renew the lease while the scope is open (default true): a scoped admission holds its slot until its
   * scope closes, however long. `false` leaves a short hold to the lease TTL (the store reclaims it as
   * dropped if the scope outlives the TTL) and saves the heartbeat.
   */
  readonly keepAlive?: boolean
  /** Interrupt the holding fiber if the backend reclaims the lease anyway (default false). */
  readonly interruptOnReclaim?: boolean
  /**
   * Wait up to this long for a slot instead of answering a denial at once (`@since 0.3.0`; default: no
   * wait). Waiters on one (policy, key) are served in arrival order; see `RateLimiterService.admit`.
   */
  readonly wait?: Duration.DurationInput
}

/**
 * Options of a waiting `limit`: the request waits in line (first come, first served) until the limit lets
 * it through, up to `wait`, then fails with `RateLimited` carrying the last denial.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { limit, MemoryBackend } from "throttlekit-effect"
 *
 * // 2 per second: the third call waits for the next token (about 500 ms) instead of failing.
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 10_000,
 *     strategy: { kind: "gcra", limit: 2, periodMs: 1000, burst: 2 }
 *   }]
 * })
 *
 * const program = Effect.forEach([1, 2, 3], () => limit("api", "alice", { wait: "2 seconds" })).pipe(
 *   Effect.map((decisions) => decisions.map((decision) => decision.allowed))
 * )
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // [ true, true, true ]
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface LimitOptions {
  /** The cost of the check (default 1). */
  readonly cost?: number
  /** Wait up to this long for the cost to be admitted, instead of failing at once (default: no wait). */
  readonly wait?: Duration.DurationInput
}

/**
 * Options of a waiting `spend`: the spend waits in line until the budget admits it (its next window), up
 * to `wait`, then fails with `RateLimited` carrying the last denial.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryBackend, spend } from "throttlekit-effect"
 *
 * // 100 tokens per second: the second spend waits for the next window instead of failing.
 * const limits = MemoryBackend.layer({
 *   policies: [{ kind: "meter", name: "llm", prefix: "llm", budget: 100, windowMs: 1000, maxKeys: 100, shared: false }]
 * })
 *
 * const program = Effect.gen(function*() {
 *   yield* spend("llm", "team-a", 100)
 *   const next = yield* spend("llm", "team-a", { tokens: 40, wait: "2 seconds" })
 *   return next.remaining
 * })
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // 60
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface SpendOptions {
  /** The tokens to spend (default 1). */
  readonly tokens?: number
  /** Wait up to this long for the budget to admit the spend, instead of failing at once (default: no wait). */
  readonly wait?: Duration.DurationInput
}

/**
 * One dimension of a multi-check (`checkAll`): a limiter policy (a check of `cost` units) or a meter
 * policy (a debit of `cost` tokens), and the key. `cost` defaults to 1.
 *
 * @since 0.3.0
 * @category models
 */
export interface DimensionCheck {
  readonly policy: string
  readonly key: string
  readonly cost?: number | undefined
}

/**
 * The most dimensions one multi-check takes.
 *
 * @since 0.3.0
 * @category constants
 */
export const MAX_CHECK_ALL = 64

/**
 * The lease operations under `admit`: what a server serves and what the admission keeper drives.
 * Application code uses the scoped `admit` instead.
 *
 * @since 0.1.0
 * @category models
 */
export interface Leases {
  /** The lease TTL in ms: a lease not renewed within it is reclaimed (as dropped). */
  readonly ttlMs: number
  /** Decides an admission and, when allowed, holds a slot under a fresh lease id. */
  readonly acquire: (
    policy: string,
    key: string,
    options?: Pick<AdmitOptions, "cost" | "hold" | "value">
  ) => Effect.Effect<Admission, RateLimiterError>
  /** Gives a slot back; `dropped` signals an overload. Unknown ids are ignored (idempotent). */
  readonly release: (leaseId: string, dropped: boolean) => Effect.Effect<void, RateLimiterError>
  /** Renews every listed lease that is still held. */
  readonly heartbeat: (leaseIds: ReadonlyArray<string>) => Effect.Effect<HeartbeatResult, RateLimiterError>
}

/**
 * The service interface. Every call is validated first (policy, then key, then amounts): bad input
 * fails with a typed error and changes no state.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiterService {
  /** Names the backend in logs and errors ("memory", "redis", "service"). */
  readonly backend: string
  /** The policies served, when this process knows them (not on the Service door: the server does). */
  readonly policies: PolicySet | undefined
  /**
   * Whether `policy` exists and serves `operation`: succeeds with `true` when this process knows it
   * does, `false` when only the server can tell (the Service door); fails with `PolicyNotFound` or
   * `OperationNotSupported` otherwise (`InvalidArgument` for a name over `Validate.MAX_POLICY_BYTES`).
   * For resolving a policy once, at startup (the HTTP middleware).
   */
  readonly resolve: (
    policy: string,
    operation: Operation
  ) => Effect.Effect<boolean, PolicyNotFound | OperationNotSupported | InvalidArgument>
  /** Consumes `cost` (default 1) from `key`'s limit. A denial is a `Decision` with `allowed = false`. */
  readonly check: (policy: string, key: string, cost?: number) => Effect.Effect<Decision, RateLimiterError>
  /**
   * `check`, waiting up to `wait` for the cost to be admitted (`@since 0.3.0`): answers the allowed
   * decision, or the last denial once `wait` has passed (at once when the denial's `retryAfterMs` is past
   * it). Waiters on one (policy, key) in this process are served in arrival order, and only the first in
   * line retries, when the denial says it can succeed (plus jitter on a remote door). Interrupting a waiter
   * frees its place; a fault ends the wait with that fault. A bad `wait` is an `InvalidArgument`.
   */
  readonly checkWithin: (
    policy: string,
    key: string,
    wait: Duration.DurationInput,
    cost?: number
  ) => Effect.Effect<Decision, RateLimiterError>
  /** Checks many keys at one consistent instant; decisions come back in input order. */
  readonly checkMany: (
    policy: string,
    keys: ReadonlyArray<string>,
    cost?: number
  ) => Effect.Effect<ReadonlyArray<Decision>, RateLimiterError>
  /**
   * The decision a 1-unit check would get now, without consuming anything. On a token budget (meter):
   * the decision a 1-token debit would get, `remaining` being the tokens left in the window.
   */
  readonly peek: (policy: string, key: string) => Effect.Effect<Decision, RateLimiterError>
  /**
   * What `key` can still spend in units of `cost`, and when it replenishes. On a token budget (meter):
   * how many debits of `cost` tokens in a row are admitted now (the last may cross the budget, as a
   * debit does), and the window's end for both instants (`now` when nothing is spent in this window).
   */
  readonly forecast: (policy: string, key: string, cost?: number) => Effect.Effect<Forecast, RateLimiterError>
  /**
   * Checks several dimensions all or nothing, at one instant: each a limiter check or a meter debit
   * (`DimensionCheck`). Either every dimension allows and every one is consumed, or none is: a request
   * denied by one dimension consumes nothing from the others. Answers one decision per dimension, in
   * input order, and the verdict (`MultiDecision`). Every dimension is validated first, in input order
   * (policy, key, cost; the same policy and key twice is refused): bad input changes nothing. One engine
   * step on the Memory door, one script on the Redis door (on a cluster the keys must share a slot: put
   * a hash tag `{…}` in them); the Service door answers `OperationNotSupported` (the wire has no
   * multi-check).
   *
   * @since 0.3.0
   */
  readonly checkAll: (checks: ReadonlyArray<DimensionCheck>) => Effect.Effect<MultiDecision, RateLimiterError>
  /** Spends `tokens` (default 1) of a token budget (the cost axis). */
  readonly debit: (policy: string, key: string, tokens?: number) => Effect.Effect<Decision, RateLimiterError>
  /** `debit`, waiting up to `wait` for the budget to admit it, as `checkWithin` waits (`@since 0.3.0`). */
  readonly debitWithin: (
    policy: string,
    key: string,
    wait: Duration.DurationInput,
    tokens?: number
  ) => Effect.Effect<Decision, RateLimiterError>
  /**
   * Admits into a concurrency (or unified rate × concurrency) policy. A held slot stays held until the
   * scope closes (renewed in the background), then is released, as dropped when the scope closed by
   * failure or interruption. A denial holds nothing.
   *
   * With `wait`, a denial waits up to that long for a slot (answering the last denial after it): waiters
   * on one (policy, key) in this process are served in arrival order, and only the first in line retries:
   * on the concurrency axis when a slot of the policy is released in this process (the ceiling is the
   * policy's, whatever the key; a slot freed elsewhere is seen after a bounded backoff with jitter on a
   * remote door, or the lease TTL on the Memory door), on the rate and cost axes when the denial's
   * `retryAfterMs` has passed. Interrupting a waiter frees its place; a fault ends the wait.
   */
  readonly admit: (
    policy: string,
    key: string,
    options?: AdmitOptions
  ) => Effect.Effect<Admission, RateLimiterError, Scope.Scope>
  /** The lease operations under `admit`. */
  readonly leases: Leases
}

/**
 * The `RateLimiter` tag. Provide it with `MemoryBackend.layer`, `RedisBackend.layer` or `ServiceBackend.layer`
 * (an example heads this module's page).
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("throttlekit-effect/RateLimiter")<RateLimiter, RateLimiterService>() {}

/**
 * Options of the front.
 *
 * @since 0.2.0
 * @category models
 */
export interface FrontOptions extends KeeperOptions {
  /**
   * What a cost above the policy's capacity gets, a cost no wait can make fit (`Policy.capacity`: a
   * GCRA's burst, a token bucket's capacity, a window's or a quota's limit, a fair escrow's budget, a
   * unified admitter's rate axis). `"fail"` (the default): the call fails with `CapacityExceeded` before
   * any state is touched. `"deny"`: the store decides it as the ThrottleKit contract does, a denial whose
   * retry hint never comes true; our gRPC server uses it, so its wire answers stay the contract's (and
   * the Service door turns such a denial back into `CapacityExceeded`). `@since 0.3.0`
   */
  readonly overCapacity?: "fail" | "deny"
}

// ---------------------------------------------------------------------------------------------------------
// Argument checks, in the one order
// ---------------------------------------------------------------------------------------------------------

const invalid = (argument: string, reason: string) => new InvalidArgument({ argument, reason })

/** A bad amount, or one the policy can never admit. */
type AmountFault = InvalidArgument | CapacityExceeded

/**
 * A policy's bounds on the amount of one call: `capacity`, the most it can ever admit
 * (`Policy.capacity`), and `maxCost`, the most whose wait a `Decision` can state (`Policy.maxCost`, at
 * least the capacity). `most` is the one number the hot path compares an amount with; only an amount
 * above it takes the slow path (`beyond`).
 */
class Limits {
  /**
   * The largest amount handed to the store without a second look. `declare`d and set in the
   * constructor, so V8 keeps it as a plain double (see `engine/gcra.ts`'s `Cell`).
   */
  declare readonly most: number
  constructor(
    readonly policy: string,
    readonly capacity: number,
    readonly maxCost: number,
    readonly failOver: boolean
  ) {
    this.most = failOver && capacity < maxCost ? capacity : maxCost
  }

  /** The fault of an amount above `most`: beyond the capacity (when raised), else beyond `maxCost`. */
  beyond(key: string, amount: number, argument: string): AmountFault {
    return this.failOver && amount > this.capacity
      ? new CapacityExceeded({ policy: this.policy, key, cost: amount, capacity: this.capacity })
      : invalid(
        argument,
        `must be at most ${this.maxCost} for this policy (a larger cost could never be admitted, nor its wait stated), got ${amount}`
      )
  }
}

/** No bound but the one every amount has (2^53 − 1, checked with the amount itself). */
const UNBOUNDED = new Limits("", Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, false)

/** Why `amount` is not usable as `argument` for `key` under `limits`, or undefined. */
const amountFault = (amount: number, argument: string, key: string, limits: Limits): AmountFault | undefined => {
  const amountProblem = Validate.costProblem(amount)
  if (amountProblem !== undefined) return invalid(argument, amountProblem)
  return amount <= limits.most ? undefined : limits.beyond(key, amount, argument)
}

/** The first bad argument of a key-and-amount call (key, then amount), or undefined. */
const keyAmountFault = (
  key: string,
  amount: number,
  argument: string,
  limits: Limits = UNBOUNDED
): AmountFault | undefined => {
  const keyProblem = Validate.keyProblem(key)
  return keyProblem !== undefined ? invalid("key", keyProblem) : amountFault(amount, argument, key, limits)
}

/** The first bad argument of a batch (size, each key, then cost), or undefined. */
const batchFault = (
  keys: ReadonlyArray<string>,
  cost: number,
  limits: Limits = UNBOUNDED
): AmountFault | undefined => {
  if (!Array.isArray(keys)) return invalid("keys", "must be an array of keys")
  if (keys.length > Validate.MAX_BATCH_KEYS) {
    return invalid("keys", `at most ${Validate.MAX_BATCH_KEYS} keys per call, got ${keys.length}`)
  }
  for (let i = 0; i < keys.length; i++) {
    const problem = Validate.keyProblem(keys[i]!)
    if (problem !== undefined) return invalid(`keys[${i}]`, problem)
  }
  return amountFault(cost, "cost", keys[0] ?? "", limits)
}

/** A policy a multi-check can take, resolved, with the bounds on its cost. */
class Checkable {
  constructor(readonly policy: LimiterPolicy | MeterPolicy, readonly limits: Limits) {}
}

/**
 * The dimensions of a multi-check, checked in the one order (the array, then each dimension in input
 * order: its policy through `lookup`, its key, its cost, and that it does not repeat an earlier
 * (policy, key)), resolved for the store; or the first fault.
 */
const checkAllArguments = (
  checks: ReadonlyArray<DimensionCheck>,
  lookup: (policy: string) => Checkable | RateLimiterError
): ReadonlyArray<StoreCheck> | RateLimiterError => {
  if (!Array.isArray(checks)) return invalid("checks", "must be an array of { policy, key, cost? }")
  if (checks.length === 0) return invalid("checks", "must hold at least one { policy, key, cost? }")
  if (checks.length > MAX_CHECK_ALL) {
    return invalid("checks", `at most ${MAX_CHECK_ALL} dimensions per multi-check, got ${checks.length}`)
  }
  const resolved: Array<StoreCheck> = []
  const seen = new Map<string, Map<string, number>>()
  for (let i = 0; i < checks.length; i++) {
    const check: DimensionCheck | undefined = checks[i]
    if (typeof check !== "object" || check === null) {
      return invalid(`checks[${i}]`, "must be { policy, key, cost? }")
    }
    const found = lookup(check.policy)
    if (!(found instanceof Checkable)) return found
    const keyProblem = Validate.keyProblem(check.key)
    if (keyProblem !== undefined) return invalid(`checks[${i}].key`, keyProblem)
    const cost = check.cost ?? 1
    const costFault = amountFault(cost, `checks[${i}].cost`, check.key, found.limits)
    if (costFault !== undefined) return costFault
    let keys = seen.get(check.policy)
    if (keys === undefined) seen.set(check.policy, keys = new Map())
    const first = keys.get(check.key)
    if (first !== undefined) {
      return invalid(
        `checks[${i}]`,
        `repeats the policy and key of checks[${first}]: each dimension is one (policy, key); ` +
          "to take more from one key, raise its cost"
      )
    }
    keys.set(check.key, i)
    resolved.push({ policy: found.policy, key: check.key, cost })
  }
  return resolved
}

/** A hint (hold, value): a finite number from 0 to 2^53 − 1, or why not. */
const hintProblem = (value: number): string | undefined =>
  typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER
    ? undefined
    : `must be a finite number from 0 to 2^53 - 1, got ${value}`

/** The checked options of an acquire, or the first bad one (key, cost, hold, value). */
const acquireArguments = (
  key: string,
  options: Pick<AdmitOptions, "cost" | "hold" | "value"> | undefined,
  limits: Limits = UNBOUNDED
): AcquireOptions | AmountFault => {
  const cost = options?.cost ?? 1
  const hold = options?.hold ?? 0
  const value = options?.value ?? 0
  const fault = keyAmountFault(key, cost, "cost", limits)
  if (fault !== undefined) return fault
  const holdProblem = hintProblem(hold)
  if (holdProblem !== undefined) return invalid("hold", holdProblem)
  const valueProblem = hintProblem(value)
  if (valueProblem !== undefined) return invalid("value", valueProblem)
  return { cost, hold, value }
}

// ---------------------------------------------------------------------------------------------------------
// The front
// ---------------------------------------------------------------------------------------------------------

/** A policy's bound operations and its bounds on a call's cost. */
class Bound<Ops> extends Limits {
  constructor(readonly ops: Ops, policy: string, capacity: number, maxCost: number, failOver: boolean) {
    super(policy, capacity, maxCost, failOver)
  }
}

/** The operations of the service before the scoped `admit` and the waiting calls are added. */
interface Unscoped extends Omit<RateLimiterService, "admit" | "checkWithin" | "debitWithin"> {
  /**
   * The fault of a call whose arguments are fine up to a bad `wait`: the policy's fault first, then the
   * arguments' (`argumentsFault`, given the policy's bounds on an amount), then `waitFault`. Changes nothing.
   */
  readonly rejectWait: (
    policy: string,
    operation: "check" | "debit" | "admit",
    argumentsFault: (limits: Limits) => AmountFault | undefined,
    waitFault: InvalidArgument
  ) => Effect.Effect<never, RateLimiterError>
}

/** A wait in ms (`Infinity` waits for ever), or the fault of a bad one. */
const waitMillis = (wait: Duration.DurationInput): number | InvalidArgument => {
  const negative = typeof wait === "number"
    ? !(wait >= 0)
    : typeof wait === "bigint"
    ? wait < 0n
    : typeof wait === "string" && wait.trimStart().startsWith("-")
  const decoded = negative ? undefined : Duration.decodeUnknown(wait)
  return decoded !== undefined && decoded._tag === "Some"
    ? Duration.toMillis(decoded.value)
    : invalid("wait", `must be a non-negative Duration (e.g. "2 seconds" or a number of ms), got ${String(wait)}`)
}

const decisionReading: Reading<Decision> = {
  allowed: (decision) => decision.allowed,
  retryAfterMs: (decision) => decision.retryAfterMs
}

const admissionReading: Reading<Admission> = {
  allowed: (admission) => admission.held,
  retryAfterMs: (admission) => admission.bindingAxis === "concurrency" ? undefined : admission.decision.retryAfterMs
}

/**
 * The front over `store`: the only implementation of `RateLimiterService`. Local stores have each policy
 * bound once, here; the keeper's heartbeat fiber lives in the given scope.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  store: RateLimiterStore,
  options: FrontOptions = {}
): Effect.Effect<RateLimiterService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const failOver = options.overCapacity !== "deny"
    const { rejectWait, ...front } = store._tag === "Local" ? localFront(store, failOver) : remoteFront(store, failOver)
    // Only the Memory door keeps its limits in this process; any other store shares them with other processes.
    const lineOptions = { remote: store.backend !== "memory", ttlMs: store.leases.ttlMs }
    const checkLines = makeWaitLines<Decision, RateLimiterError>(decisionReading, lineOptions)
    const debitLines = makeWaitLines<Decision, RateLimiterError>(decisionReading, lineOptions)
    const admitLines = makeWaitLines<Admission, RateLimiterError>(admissionReading, lineOptions)
    const keep = yield* makeKeeper(store.leases, options, admitLines)

    const admit: RateLimiterService["admit"] = (policy, key, admitOptions = {}) => {
      const acquire = front.leases.acquire(policy, key, admitOptions)
      const keepOptions = {
        keepAlive: admitOptions.keepAlive !== false,
        interruptOnReclaim: admitOptions.interruptOnReclaim === true,
        policy,
        key
      }
      if (admitOptions.wait === undefined) return keep(acquire, keepOptions)
      const waitMs = waitMillis(admitOptions.wait)
      return waitMs instanceof InvalidArgument
        ? rejectWait(policy, "admit", (limits) => {
          const checked = acquireArguments(key, admitOptions, limits)
          return checked instanceof InvalidArgument || checked instanceof CapacityExceeded ? checked : undefined
        }, waitMs)
        : keep(waitMs > 0 ? admitLines.wait(policy, key, acquire, waitMs) : acquire, keepOptions)
    }

    /** A check or a debit that waits in its line (`amount` being the cost or the tokens). */
    const waited = (
      lines: typeof checkLines,
      operation: "check" | "debit",
      argument: "cost" | "tokens",
      run: (policy: string, key: string, amount: number) => Effect.Effect<Decision, RateLimiterError>
    ) =>
    (
      policy: string,
      key: string,
      wait: Duration.DurationInput,
      amount = 1
    ): Effect.Effect<Decision, RateLimiterError> => {
      const waitMs = waitMillis(wait)
      if (waitMs instanceof InvalidArgument) {
        return rejectWait(policy, operation, (limits) => keyAmountFault(key, amount, argument, limits), waitMs)
      }
      const once = run(policy, key, amount)
      return waitMs > 0 ? lines.wait(policy, key, once, waitMs) : once
    }
    const checkWithin: RateLimiterService["checkWithin"] = waited(checkLines, "check", "cost", front.check)
    const debitWithin: RateLimiterService["debitWithin"] = waited(debitLines, "debit", "tokens", front.debit)

    return { ...front, checkWithin, debitWithin, admit }
  })

/**
 * Why a fair-escrow policy answers only check (as on the ThrottleKit core and its server): the reason of
 * its `OperationNotSupported`, which our server sends in the status details.
 *
 * @since 0.3.0
 * @internal
 */
export const FAIR_SERVES = "a fair-escrow policy serves check only (key = tenant)"

/** The front of a store that knows its policies: one lookup per call, then the bound operation. */
const localFront = (store: LocalStore, failOver: boolean): Unscoped => {
  const policies = store.policies
  const limiters = new Map<string, Bound<BoundLimiter>>()
  const meters = new Map<string, BoundMeter>()
  const admitters = new Map<string, Bound<BoundAdmitter>>()
  const fairs = new Map<string, Bound<BoundFair>>()
  const kinds = new Map<string, Policy["kind"]>()
  const checkables = new Map<string, Checkable>()
  const MAX = Number.MAX_SAFE_INTEGER
  const bind = <Ops>(ops: Ops, name: string, strategy: Strategy | undefined) =>
    strategy === undefined
      ? new Bound(ops, name, MAX, MAX, false)
      : new Bound(ops, name, capacity(strategy), maxCost(strategy), failOver)
  // A meter has no capacity: a debit is admitted while the window's budget is not spent, however large
  // (the crossing debit counts in full), so every debit fits a fresh window. A pure concurrency
  // admitter's cost is not spent on any axis; a unified one's is its rate axis's.
  const shadowedPolicies = new Set<string>()
  for (const policy of policies) {
    kinds.set(policy.name, policy.kind)
    // A shadowed policy's operations are wrapped here, once: an enforced one is bound as the store gives it.
    const shadow = isShadow(policy)
    if (shadow) shadowedPolicies.add(policy.name)
    switch (policy.kind) {
      case "limiter": {
        const ops = store.limiter(policy)
        const bound = bind(shadow ? Shadow.limiter(ops) : ops, policy.name, policy.strategy)
        limiters.set(policy.name, bound)
        checkables.set(policy.name, new Checkable(policy, bound))
        break
      }
      case "meter": {
        const ops = store.meter(policy)
        meters.set(policy.name, shadow ? Shadow.meter(ops) : ops)
        checkables.set(policy.name, new Checkable(policy, UNBOUNDED))
        break
      }
      case "admitter": {
        const ops = store.admitter(policy)
        admitters.set(policy.name, bind(shadow ? Shadow.admitter(ops) : ops, policy.name, policy.rate))
        break
      }
      case "fair": {
        const ops = store.fair(policy)
        // A tenant never gets more than the window's whole budget, whoever else is active.
        fairs.set(
          policy.name,
          new Bound(shadow ? Shadow.fair(ops) : ops, policy.name, policy.fairEscrow.limit, MAX, failOver)
        )
        break
      }
    }
  }

  /**
   * Why `operation` cannot run on `policy` (not configured, or another kind), as the front reports it.
   * Only a missed lookup gets here, so the name's length is checked off the hot path: no configured name
   * is longer than `MAX_POLICY_BYTES`, and a longer one is refused without being repeated back.
   */
  const policyFault = (
    policy: string,
    operation: Operation
  ): PolicyNotFound | OperationNotSupported | InvalidArgument => {
    const kind = kinds.get(policy)
    if (kind === "fair") return new OperationNotSupported({ policy, operation, reason: FAIR_SERVES })
    if (kind !== undefined) return new OperationNotSupported({ policy, operation, reason: `a ${kind} policy` })
    const tooLong = Validate.policyNameProblem(policy)
    return tooLong === undefined
      ? new PolicyNotFound({ policy, configured: policies.names })
      : invalid("policy", tooLong)
  }

  const boundFault = (
    policy: string,
    operation: "peek" | "forecast",
    bound: Bound<BoundLimiter> | undefined
  ): PolicyNotFound | OperationNotSupported | InvalidArgument | undefined => {
    if (bound === undefined) return policyFault(policy, operation)
    const served = bound.ops[operation]
    return isUnsupported(served)
      ? new OperationNotSupported({ policy, operation, reason: served.reason })
      : undefined
  }

  const resolve: RateLimiterService["resolve"] = (policy, operation) => {
    const fault = operation === "debit"
      ? meters.has(policy) ? undefined : policyFault(policy, operation)
      : operation === "admit"
      ? admitters.has(policy) ? undefined : policyFault(policy, operation)
      : operation === "peek" || operation === "forecast"
      ? meters.has(policy) ? undefined : boundFault(policy, operation, limiters.get(policy))
      : limiters.has(policy) || (operation === "check" && fairs.has(policy))
      ? undefined
      : policyFault(policy, operation)
    return fault === undefined ? Effect.succeed(true) : Effect.fail(fault)
  }

  // The hot path: one Map lookup, plain argument checks, then the store's one Effect. No span of its own
  // (a span per call costs as much CPU as a whole check here; see bench/). Callers that want one wrap it.
  const check: RateLimiterService["check"] = (policy, key, cost = 1) => {
    const bound = limiters.get(policy)
    if (bound === undefined) return checkFair(policy, key, cost)
    const fault = keyAmountFault(key, cost, "cost", bound)
    return fault === undefined ? bound.ops.check(key, cost) : Effect.fail(fault)
  }

  /** A check that is not a limiter's: a fair-escrow policy's (key = tenant), or a fault. */
  const checkFair = (policy: string, key: string, cost: number): Effect.Effect<Decision, RateLimiterError> => {
    const fair = fairs.get(policy)
    if (fair === undefined) return Effect.fail(policyFault(policy, "check"))
    const fault = keyAmountFault(key, cost, "cost", fair)
    return fault === undefined ? fair.ops.check(key, cost) : Effect.fail(fault)
  }

  const checkMany: RateLimiterService["checkMany"] = (policy, keys, cost = 1) => {
    const bound = limiters.get(policy)
    if (bound === undefined) return Effect.fail(policyFault(policy, "checkMany"))
    const fault = batchFault(keys, cost, bound)
    if (fault !== undefined) return Effect.fail(fault)
    return keys.length === 0 ? Effect.succeed([]) : bound.ops.checkMany(keys, cost)
  }

  const peek: RateLimiterService["peek"] = (policy, key) => {
    const served = limiters.get(policy)?.ops.peek ?? meters.get(policy)?.peek
    if (served === undefined || isUnsupported(served)) {
      return Effect.fail(boundFault(policy, "peek", limiters.get(policy))!)
    }
    const keyProblem = Validate.keyProblem(key)
    return keyProblem === undefined ? served(key) : Effect.fail(invalid("key", keyProblem))
  }

  // On a meter, `cost` is the tokens of each debit (checked as any cost: a whole number ≥ 1).
  const forecast: RateLimiterService["forecast"] = (policy, key, cost = 1) => {
    const bound = limiters.get(policy)
    const served = bound?.ops.forecast ?? meters.get(policy)?.forecast
    if (served === undefined || isUnsupported(served)) return Effect.fail(boundFault(policy, "forecast", bound)!)
    const fault = keyAmountFault(key, cost, "cost")
    return fault === undefined ? served(key, cost) : Effect.fail(fault)
  }

  const debit: RateLimiterService["debit"] = (policy, key, tokens = 1) => {
    const bound = meters.get(policy)
    if (bound === undefined) return Effect.fail(policyFault(policy, "debit"))
    const fault = keyAmountFault(key, tokens, "tokens")
    return fault === undefined ? bound.debit(key, tokens) : Effect.fail(fault)
  }

  // Off the hot path: the single-check operations above are untouched by it.
  const checkAllLookup = (policy: string): Checkable | RateLimiterError => {
    const found = checkables.get(policy)
    if (found !== undefined) return found
    const kind = kinds.get(policy)
    return kind === "admitter" || kind === "fair"
      ? new OperationNotSupported({
        policy,
        operation: "checkAll",
        reason: `a ${kind === "fair" ? "fair-escrow" : kind} policy: a multi-check takes limiter and meter policies`
      })
      : policyFault(policy, "checkAll")
  }
  const serveAll = store.checkAll
  const checkAll: RateLimiterService["checkAll"] = (checks) => {
    const resolved = checkAllArguments(checks, checkAllLookup)
    if (!Array.isArray(resolved)) return Effect.fail(resolved as RateLimiterError)
    if (serveAll === undefined) {
      return Effect.fail(
        new OperationNotSupported({
          policy: resolved[0]!.policy.name,
          operation: "checkAll",
          reason: `this ${store.backend} store is wrapped (fail mode, monitor, two-tier) and its wrappers ` +
            "do not serve a multi-check"
        })
      )
    }
    if (shadowedPolicies.size === 0) return Effect.map(serveAll(resolved), multiDecisionOf)
    return checkAllWithShadow(serveAll, resolved)
  }

  /**
   * A multi-check with shadowed dimensions: they are decided and consumed as usual but never deny. One
   * all-or-nothing call first; when only shadowed dimensions denied, a second call consumes every
   * dimension that allowed, the shadowed denials answered as allowances (`shadowed`); when an enforced
   * dimension denied, that is the verdict and nothing is consumed (the shadowed denials, marked
   * `shadowed`, never bind).
   */
  const checkAllWithShadow = (
    serve: CheckAll,
    resolved: ReadonlyArray<StoreCheck>
  ): Effect.Effect<MultiDecision, RateLimiterError> =>
    Effect.flatMap(serve(resolved), (first) => {
      const isShadowed = (i: number) => shadowedPolicies.has(resolved[i]!.policy.name)
      const enforcedDenial = first.some((d, i) => !d.allowed && !isShadowed(i))
      if (first.every((d) => d.allowed)) return Effect.succeed(multiDecisionOf(first))
      // An enforced denial is the verdict (nothing consumed); a shadowed dimension's denial never binds.
      if (enforcedDenial) {
        return Effect.succeed(multiDecisionOf(first.map((d, i) => isShadowed(i) ? shadowOf(d) : d)))
      }
      const passing = resolved.filter((_, i) => first[i]!.allowed)
      const retried = passing.length === 0 ? Effect.succeed([]) : serve(passing)
      return Effect.map(retried, (second) => {
        // The second call may deny an enforced dimension that changed meanwhile: that is the verdict then.
        const decisions: Array<Decision> = []
        let next = 0
        for (let i = 0; i < resolved.length; i++) {
          const decision = first[i]!.allowed ? second[next++]! : first[i]!
          decisions.push(isShadowed(i) ? shadowOf(decision) : decision)
        }
        return multiDecisionOf(decisions)
      })
    })

  const acquire: Leases["acquire"] = (policy, key, acquireOptions) => {
    const bound = admitters.get(policy)
    if (bound === undefined) return Effect.fail(policyFault(policy, "admit"))
    const checked = acquireArguments(key, acquireOptions, bound)
    return checked instanceof InvalidArgument || checked instanceof CapacityExceeded
      ? Effect.fail(checked)
      : bound.ops.acquire(key, checked)
  }

  const rejectWait: Unscoped["rejectWait"] = (policy, operation, argumentsFault, waitFault) =>
    Effect.flatMap(resolve(policy, operation), () => {
      const limits = operation === "check"
        ? limiters.get(policy)
        : operation === "admit"
        ? admitters.get(policy)
        : undefined
      return Effect.fail(argumentsFault(limits ?? UNBOUNDED) ?? waitFault)
    })

  return {
    backend: store.backend,
    policies,
    resolve,
    rejectWait,
    check,
    checkMany,
    checkAll,
    peek,
    forecast,
    debit,
    leases: { ttlMs: store.leases.ttlMs, acquire, release: store.leases.release, heartbeat: store.leases.heartbeat }
  }
}

/**
 * Why the Service door answers no multi-check: the reason of its `OperationNotSupported`.
 *
 * @since 0.3.0
 * @internal
 */
export const NO_WIRE_CHECK_ALL = "the ThrottleKit wire (throttlekit.v1) has no multi-check RPC, and checks sent one " +
  "by one are not all or nothing; use checkAll on the Memory or Redis door"

/**
 * The front of a store whose server resolves policies: arguments are checked here (bad input never
 * leaves the process); a bad argument first asks the server about the policy, so an unknown policy or a
 * wrong kind is reported before the argument, as on every other door.
 *
 * The capacity is the server's to know, so a cost above it is sent, and the server denies it as the
 * contract does (consuming nothing). With `failOver`, such a denial comes back as `CapacityExceeded`
 * where the decision proves it: a rate limiter's decisions report its capacity as `limit` (burst,
 * capacity, or the window's limit), so a denial with `cost > limit` can never succeed. A fair escrow's
 * `limit` is the tenant's current share instead, which grows when other tenants leave, so before
 * converting a check's denial the store confirms the policy is a rate limiter (`isLimiter`, one
 * round trip consuming nothing, taken only on that path). An admission denied on its rate axis is
 * proved by the decision alone (only admitters admit, and their rate axis reports its capacity). A cost
 * of 1 fits every policy: those calls are handed over as they are.
 */
const remoteFront = (store: RemoteStore, failOver: boolean): Unscoped => {
  const rejected = <A>(
    policy: string,
    operation: Operation,
    fault: RateLimiterError
  ): Effect.Effect<A, RateLimiterError> => {
    // A name no policy can have is the policy's fault, and comes first (as on every door); it needs no
    // probe to know.
    const tooLong = Validate.policyNameProblem(policy)
    if (tooLong !== undefined) return Effect.fail(invalid("policy", tooLong))
    return Effect.flatMap(store.probe(policy, operation), (policyFault) => Effect.fail(policyFault ?? fault))
  }

  /** `decision`, or `CapacityExceeded` when it denies a cost above a rate limiter's capacity. */
  const overCapacity = (
    policy: string,
    key: string,
    cost: number,
    decision: Decision
  ): Effect.Effect<Decision, RateLimiterError> =>
    decision.allowed || cost <= decision.limit
      ? Effect.succeed(decision)
      : Effect.flatMap(store.isLimiter(policy), (limiter) =>
        limiter
          ? Effect.fail(new CapacityExceeded({ policy, key, cost, capacity: decision.limit }))
          : Effect.succeed(decision))

  const check: RateLimiterService["check"] = (policy, key, cost = 1) => {
    const fault = keyAmountFault(key, cost, "cost")
    if (fault !== undefined) return rejected(policy, "check", fault)
    return cost <= 1 || !failOver
      ? store.check(policy, key, cost)
      : Effect.flatMap(store.check(policy, key, cost), (decision) => overCapacity(policy, key, cost, decision))
  }

  const checkMany: RateLimiterService["checkMany"] = (policy, keys, cost = 1) => {
    const fault = batchFault(keys, cost)
    if (fault !== undefined) return rejected(policy, "checkMany", fault)
    if (cost <= 1 || !failOver || keys.length === 0) return store.checkMany(policy, keys, cost)
    // Only a rate limiter answers CheckMany, and every key shares its capacity: one denial above it
    // says the cost can never fit, for any key.
    return Effect.flatMap(store.checkMany(policy, keys, cost), (decisions) => {
      const over = decisions.find((decision) => !decision.allowed && cost > decision.limit)
      return over === undefined
        ? Effect.succeed(decisions)
        : Effect.fail(new CapacityExceeded({ policy, key: keys[0]!, cost, capacity: over.limit }))
    })
  }

  const peek: RateLimiterService["peek"] = (policy, key) => {
    const keyProblem = Validate.keyProblem(key)
    return keyProblem === undefined ? store.peek(policy, key) : rejected(policy, "peek", invalid("key", keyProblem))
  }

  const forecast: RateLimiterService["forecast"] = (policy, key, cost = 1) => {
    const fault = keyAmountFault(key, cost, "cost")
    return fault === undefined ? store.forecast(policy, key, cost) : rejected(policy, "forecast", fault)
  }

  const debit: RateLimiterService["debit"] = (policy, key, tokens = 1) => {
    const fault = keyAmountFault(key, tokens, "tokens")
    return fault === undefined ? store.debit(policy, key, tokens) : rejected(policy, "debit", fault)
  }

  const checkAll: RateLimiterService["checkAll"] = (checks) =>
    Effect.fail(
      Array.isArray(checks) && checks.length > 0 && typeof checks[0]?.policy === "string"
        ? new OperationNotSupported({ policy: checks[0].policy, operation: "checkAll", reason: NO_WIRE_CHECK_ALL })
        : invalid("checks", "must be a non-empty array of { policy, key, cost? }")
    )

  const acquire: Leases["acquire"] = (policy, key, acquireOptions) => {
    const checked = acquireArguments(key, acquireOptions)
    if (checked instanceof InvalidArgument || checked instanceof CapacityExceeded) {
      return rejected(policy, "admit", checked)
    }
    const cost = checked.cost
    if (cost <= 1 || !failOver) return store.acquire(policy, key, checked)
    return Effect.flatMap(
      store.acquire(policy, key, checked),
      (admission) =>
        !admission.held && admission.bindingAxis === "rate" && cost > admission.decision.limit
          ? Effect.fail(new CapacityExceeded({ policy, key, cost, capacity: admission.decision.limit }))
          : Effect.succeed(admission)
    )
  }

  const rejectWait: Unscoped["rejectWait"] = (policy, operation, argumentsFault, waitFault) =>
    rejected(policy, operation, argumentsFault(UNBOUNDED) ?? waitFault)

  return {
    backend: store.backend,
    policies: undefined,
    resolve: () => Effect.succeed(false),
    rejectWait,
    check,
    checkMany,
    checkAll,
    peek,
    forecast,
    debit,
    leases: { ttlMs: store.leases.ttlMs, acquire, release: store.leases.release, heartbeat: store.leases.heartbeat }
  }
}

/**
 * The front over the `Store` in context.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: FrontOptions = {}): Layer.Layer<RateLimiter, never, Store> =>
  Layer.scoped(RateLimiter, Effect.flatMap(Store, (store) => make(store, options)))

/**
 * Checks `key` and fails with `RateLimited` (carrying the decision) when denied, so `Effect.gen` code can
 * `yield*` a limit and let the error channel carry the denial.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { limit, MemoryBackend } from "throttlekit-effect"
 *
 * // A denial fails with `RateLimited`, which carries the decision.
 * const handle = (user: string) =>
 *   limit("api", user).pipe(
 *     Effect.as("served"),
 *     Effect.catchTag("RateLimited", (denied) => Effect.succeed(`429, retry in ${denied.decision.retryAfterMs} ms`))
 *   )
 *
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 10_000,
 *     strategy: { kind: "gcra", limit: 2, periodMs: 1000, burst: 2 } // 2 per second per key
 *   }]
 * })
 *
 * Effect.runPromise(Effect.forEach(["alice", "alice", "alice"], handle).pipe(Effect.provide(limits)))
 *   .then(console.log) // [ "served", "served", "429, retry in 499 ms" ]
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const limit = (
  policy: string,
  key: string,
  cost?: number | LimitOptions
): Effect.Effect<Decision, RateLimited | RateLimiterError, RateLimiter> =>
  Effect.flatMap(RateLimiter, (limiter) =>
    Effect.flatMap(
      typeof cost === "object" && cost !== null && cost.wait !== undefined
        ? limiter.checkWithin(policy, key, cost.wait, cost.cost)
        : limiter.check(policy, key, typeof cost === "object" && cost !== null ? cost.cost : cost),
      (decision) =>
        decision.allowed ? Effect.succeed(decision) : Effect.fail(new RateLimited({ policy, key, decision }))
    ))

/**
 * Checks several dimensions all or nothing (`RateLimiterService.checkAll`) and fails with `RateLimited`
 * when any denies, carrying the binding dimension's policy, key and decision (its `retryAfterMs` is the
 * longest wait among the denying dimensions). A denial consumed nothing from any dimension.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { limitAll, MemoryBackend } from "throttlekit-effect"
 *
 * // A request counts against its user, its organisation and a token budget, or against none of them.
 * const handle = (user: string, org: string, tokens: number) =>
 *   limitAll([
 *     { policy: "per-user", key: user },
 *     { policy: "per-org", key: org },
 *     { policy: "llm", key: org, cost: tokens }
 *   ]).pipe(
 *     Effect.as("served"),
 *     Effect.catchTag("RateLimited", (denied) => Effect.succeed(`429 by ${denied.policy}`))
 *   )
 *
 * const limits = MemoryBackend.layer({
 *   policies: [
 *     { kind: "limiter", name: "per-user", prefix: "u", maxKeys: 10_000, strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 } },
 *     { kind: "limiter", name: "per-org", prefix: "o", maxKeys: 1000, strategy: { kind: "fixedWindow", limit: 2, windowMs: 60_000 } },
 *     { kind: "meter", name: "llm", prefix: "llm", budget: 10_000, windowMs: 3_600_000, maxKeys: 1000, shared: false }
 *   ]
 * })
 *
 * const program = Effect.forEach(["alice", "bob", "carol"], (user) => handle(user, "acme", 100))
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // [ "served", "served", "429 by per-org" ]
 * ```
 *
 * @since 0.3.0
 * @category combinators
 */
export const limitAll = (
  checks: ReadonlyArray<DimensionCheck>
): Effect.Effect<MultiDecision, RateLimited | RateLimiterError, RateLimiter> =>
  Effect.flatMap(RateLimiter, (limiter) =>
    Effect.flatMap(limiter.checkAll(checks), (verdict) => {
      if (verdict.allowed) return Effect.succeed(verdict)
      const binding = checks[verdict.binding]!
      return Effect.fail(
        new RateLimited({ policy: binding.policy, key: binding.key, decision: verdict.bindingDecision })
      )
    }))

/**
 * Spends `tokens` of a budget and fails with `RateLimited` when the budget refuses it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryBackend, spend } from "throttlekit-effect"
 *
 * // Spend an LLM call's tokens from its team's budget; a refused spend fails with `RateLimited`.
 * const complete = (team: string, tokens: number) =>
 *   Effect.map(spend("llm", team, tokens), (decision) => `${decision.remaining} tokens left`)
 *
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "meter",
 *     name: "llm",
 *     prefix: "llm",
 *     budget: 10_000, // tokens per team per hour
 *     windowMs: 3_600_000,
 *     maxKeys: 1000,
 *     shared: false
 *   }]
 * })
 *
 * Effect.runPromise(complete("team-a", 640).pipe(Effect.provide(limits))).then(console.log) // "9360 tokens left"
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const spend = (
  policy: string,
  key: string,
  tokens?: number | SpendOptions
): Effect.Effect<Decision, RateLimited | RateLimiterError, RateLimiter> =>
  Effect.flatMap(RateLimiter, (limiter) =>
    Effect.flatMap(
      typeof tokens === "object" && tokens !== null && tokens.wait !== undefined
        ? limiter.debitWithin(policy, key, tokens.wait, tokens.tokens)
        : limiter.debit(policy, key, typeof tokens === "object" && tokens !== null ? tokens.tokens : tokens),
      (decision) =>
        decision.allowed ? Effect.succeed(decision) : Effect.fail(new RateLimited({ policy, key, decision }))
    ))

/**
 * Runs `self` inside an admission: the slot is held while it runs and released when it ends (as dropped
 * when it fails or is interrupted). A denied admission fails with `RateLimited` and `self` never runs (a
 * shadow-mode policy's would-be denial runs `self`, holding no slot).
 *
 * @example
 * ```ts
 * import { Effect, Either } from "effect"
 * import { admitted, MemoryBackend } from "throttlekit-effect"
 *
 * // A job holds one of the queue's 2 slots while it runs; a job finding none fails with `RateLimited`.
 * const job = (id: number) => Effect.sleep("20 millis").pipe(Effect.as(`job ${id} done`), admitted("workers", "queue"))
 *
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "admitter",
 *     name: "workers",
 *     prefix: "workers",
 *     maxKeys: 1000,
 *     concurrency: {
 *       algorithm: "fixed", // a fixed ceiling of 2 (aimd and gradient2 adapt it)
 *       minLimit: 2,
 *       maxLimit: 2,
 *       initialLimit: 2,
 *       backoffRatio: 0.5,
 *       smoothing: 0.2,
 *       tolerance: 2,
 *       rttWindow: 10
 *     }
 *   }]
 * })
 *
 * const program = Effect.forEach([1, 2, 3], (id) => Effect.either(job(id)), { concurrency: 3 }).pipe(
 *   Effect.map((results) => results.map(Either.getOrElse(() => "busy")))
 * )
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits))).then(console.log) // [ "job 1 done", "job 2 done", "busy" ]
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const admitted: {
  (policy: string, key: string, options?: AdmitOptions): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RateLimited | RateLimiterError, R | RateLimiter>
} = (policy, key, options) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.scoped(
    Effect.flatMap(RateLimiter, (limiter) =>
      Effect.flatMap(
        limiter.admit(policy, key, options),
        (admission): Effect.Effect<A, E | RateLimited, R> =>
          // Allowed: a slot is held, or the policy is in shadow mode (answered allowed, holding none).
          admission.decision.allowed
            ? self
            : Effect.fail(
              new RateLimited({ policy, key, decision: admission.decision, bindingAxis: admission.bindingAxis })
            )
      ))
  )
