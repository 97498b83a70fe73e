/**
 * The results every backend returns: a `Decision` for a check, peek or debit, a `Forecast` for a
 * forecast, an `Admission` for an admit. A denial is a `Decision` with `allowed = false`, never an error.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The five integers of CONTRACT.md §1. `remaining` is never negative and `retryAfterMs` is 0 when allowed.
 *
 * Two flags say how the decision was made (both `false` on an ordinary decision; neither is on the wire,
 * which carries the five fields only):
 * - `shadowed` (since 0.3.0): the policy is in shadow mode and its real answer was a denial, turned into
 *   this allowance (`retryAfterMs` 0, as any allowance; `limit`, `remaining` and `resetAt` are the real
 *   decision's, so `remaining` is what was really left: usually 0);
 * - `degraded` (since 0.3.0): the shared store was unreachable and this process decided alone, against
 *   its share of the limit (`RedisBackend`'s `insurance`); `limit` is then that share.
 *
 * The flags are read from the prototype (`false`) unless a decision sets its own: an ordinary decision
 * keeps its five own fields, as fast to build and to compare as before.
 *
 * @since 0.1.0
 * @category models
 */
export class Decision extends Schema.Class<Decision>("Decision")({
  allowed: Schema.Boolean,
  limit: Schema.Number,
  remaining: Schema.Number,
  resetAt: Schema.Number,
  retryAfterMs: Schema.Number,
  shadowed: Schema.optional(Schema.Boolean),
  degraded: Schema.optional(Schema.Boolean)
}) {
  /**
   * True when a shadow-mode policy's denial was answered as this allowance.
   *
   * @since 0.3.0
   */
  declare readonly shadowed: boolean
  /**
   * True when decided in this process alone while the shared store was unreachable.
   *
   * @since 0.3.0
   */
  declare readonly degraded: boolean
}

// The flags' defaults, shared by every decision that does not set its own (writable, so a decision that
// sets one gets its own property).
Object.defineProperty(Decision.prototype, "shadowed", { value: false, writable: true, enumerable: false })
Object.defineProperty(Decision.prototype, "degraded", { value: false, writable: true, enumerable: false })

/**
 * The plain shape of a decision, as the engine computes it and the wire carries it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecisionData {
  readonly allowed: boolean
  readonly limit: number
  readonly remaining: number
  readonly resetAt: number
  readonly retryAfterMs: number
}

/**
 * What `new Decision(data, true)` builds (the same prototype and the same own fields, in the same order),
 * without the Schema.Class constructor's copy and defaults merge: every decision of every door passes
 * through here, and that constructor cost more than the engine's whole check. A plain constructor
 * function rather than `Object.create(Decision.prototype)` plus five stores: V8 then lays the five fields
 * out inside the object from the first call, where the `Object.create` form grew them one by one.
 */
const DecisionOf = function(
  this: { -readonly [K in keyof DecisionData]: DecisionData[K] },
  allowed: boolean,
  limit: number,
  remaining: number,
  resetAt: number,
  retryAfterMs: number
) {
  this.allowed = allowed
  this.limit = limit
  this.remaining = remaining
  this.resetAt = resetAt
  this.retryAfterMs = retryAfterMs
} as unknown as new(
  allowed: boolean,
  limit: number,
  remaining: number,
  resetAt: number,
  retryAfterMs: number
) => Decision
DecisionOf.prototype = Decision.prototype

/**
 * Builds a `Decision` from its five fields without validating them: for code that computed them exactly
 * (the engines), so their output is the `Decision` itself and no door copies it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decisionOf = (
  allowed: boolean,
  limit: number,
  remaining: number,
  resetAt: number,
  retryAfterMs: number
): Decision => new DecisionOf(allowed, limit, remaining, resetAt, retryAfterMs)

/**
 * `decision` answered as a shadow-mode allowance: a denial becomes an allowed decision with `shadowed`
 * set (its `limit`, `remaining` and `resetAt` kept, `retryAfterMs` 0, `degraded` kept); an allowance is
 * returned as it is.
 *
 * @since 0.3.0
 * @category constructors
 */
export const shadowOf = (decision: Decision): Decision =>
  decision.allowed ? decision : new Decision({
    allowed: true,
    limit: decision.limit,
    remaining: decision.remaining,
    resetAt: decision.resetAt,
    retryAfterMs: 0,
    shadowed: true,
    ...(decision.degraded ? { degraded: true } : {})
  }, true)

/**
 * `decision` marked as made in degraded mode (decided in this process alone while the shared store was
 * unreachable).
 *
 * @since 0.3.0
 * @category constructors
 */
export const degradedOf = (decision: Decision): Decision =>
  new Decision({
    allowed: decision.allowed,
    limit: decision.limit,
    remaining: decision.remaining,
    resetAt: decision.resetAt,
    retryAfterMs: decision.retryAfterMs,
    degraded: true
  }, true)

/**
 * Wraps engine output in a `Decision` without re-validating it (the engine already guarantees the shape).
 * A `Decision` is returned as it is (it is immutable).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromData = (data: DecisionData): Decision =>
  data instanceof DecisionOf
    ? data
    : new DecisionOf(data.allowed, data.limit, data.remaining, data.resetAt, data.retryAfterMs)

/**
 * The answer to a multi-dimension check (`RateLimiter.checkAll`): one `Decision` per dimension, in input
 * order, and the verdict over all of them. `allowed` is true exactly when every dimension allowed, and
 * then every dimension was consumed; otherwise none was (all or nothing), and each decision is what that
 * dimension would have answered on its own at the same instant (an allowed one among them reports the
 * state after a consumption that did not happen).
 *
 * `binding` is the index of the dimension that decides the verdict: on a denial, the denied dimension
 * with the longest `retryAfterMs` (the first on a tie), so its wait is the least before the whole request
 * can pass; when allowed, the dimension with the fewest units `remaining` (the next one to deny; a
 * shadowed dimension, which never denies, binds only when every dimension is shadowed).
 *
 * @since 0.3.0
 * @category models
 */
export class MultiDecision extends Schema.Class<MultiDecision>("MultiDecision")({
  allowed: Schema.Boolean,
  decisions: Schema.Array(Decision),
  binding: Schema.Number
}) {
  /** The decision of the binding dimension. */
  get bindingDecision(): Decision {
    return this.decisions[this.binding]!
  }
}

/** How close a dimension is to denying: its `remaining`; never, for a shadowed one (it never denies). */
const headroom = (decision: Decision): number => decision.shadowed ? Number.POSITIVE_INFINITY : decision.remaining

/**
 * The verdict over `decisions` (one per dimension, non-empty), with its binding dimension (see
 * `MultiDecision`).
 *
 * @since 0.3.0
 * @category constructors
 */
export const multiDecisionOf = (decisions: ReadonlyArray<Decision>): MultiDecision => {
  let allowed = true
  for (const decision of decisions) if (!decision.allowed) allowed = false
  let binding = -1
  for (let i = 0; i < decisions.length; i++) {
    const decision = decisions[i]!
    if (binding < 0) {
      if (allowed || !decision.allowed) binding = i
      continue
    }
    const best = decisions[binding]!
    if (
      allowed
        ? headroom(decision) < headroom(best)
        : !decision.allowed && decision.retryAfterMs > best.retryAfterMs
    ) {
      binding = i
    }
  }
  return new MultiDecision({ allowed, decisions, binding }, true)
}

/**
 * What a key can still take: whole units of `cost` admissible now, when capacity next grows by at least
 * one unit, and when the limiter is full again (epoch-ms).
 *
 * @since 0.1.0
 * @category models
 */
export class Forecast extends Schema.Class<Forecast>("Forecast")({
  spendableNow: Schema.Number,
  nextReplenishAt: Schema.Number,
  fullAt: Schema.Number
}) {}

/**
 * The axis that bound a denied admission, or `""` when it was allowed.
 *
 * @since 0.1.0
 * @category models
 */
export const BindingAxis = Schema.Literal("rate", "concurrency", "cost", "")

/**
 * @since 0.1.0
 * @category models
 */
export type BindingAxis = typeof BindingAxis.Type

const reclaimedSignals = new WeakMap<Admission, () => boolean>()

/**
 * The outcome of `admit`: the decision, and when a slot is held, its opaque lease id and expiry.
 * `held` is true exactly when a slot is held; `reclaimed` reads, at any time, whether the backend
 * has since reclaimed the slot (a missed heartbeat), in which case it counts as dropped.
 *
 * @since 0.1.0
 * @category models
 */
export class Admission extends Schema.Class<Admission>("Admission")({
  decision: Decision,
  leaseId: Schema.String,
  leaseExpiresAt: Schema.Number,
  bindingAxis: BindingAxis,
  policyDenied: Schema.Boolean
}) {
  /** True when this admission holds a slot that must be released. */
  get held(): boolean {
    return this.leaseId !== ""
  }

  /** True once the backend has reclaimed the held slot (it was not renewed in time). */
  get reclaimed(): boolean {
    const read = reclaimedSignals.get(this)
    return read === undefined ? false : read()
  }
}

/**
 * Attaches a live "was it reclaimed" reader to an admission. Used by the admission keeper.
 *
 * @since 0.1.0
 * @category constructors
 * @internal
 */
export const watchReclaimed = (admission: Admission, read: () => boolean): Admission => {
  reclaimedSignals.set(admission, read)
  return admission
}
