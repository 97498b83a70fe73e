/**
 * The typed model of named policies: what each limit is, independent of where its state lives.
 * A policy is a limiter (rate), a meter (cost / token budget) or an admitter (concurrency, optionally
 * unified with a rate strategy). The rate strategies are GCRA, token bucket, fixed window, sliding window,
 * sliding window log and quota (a budget per calendar month, week or day at a fixed UTC offset, per fixed
 * period from an anchor, or per rolling period). Policy files decode into these (see `PolicyFile.ts`).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** A whole number ≥ 1 that a JS number holds exactly. */
const PositiveInt = Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER))
/** A finite number > 0. */
const PositiveNumber = Schema.Number.pipe(Schema.finite(), Schema.positive())

/**
 * GCRA: `limit` requests per `periodMs`, bursting up to `burst`. The reported limit is `burst`.
 *
 * @since 0.1.0
 * @category models
 */
export const Gcra = Schema.Struct({
  kind: Schema.Literal("gcra"),
  limit: PositiveInt,
  periodMs: PositiveInt,
  burst: PositiveInt
})

/**
 * Token bucket: holds up to `capacity` tokens, refilled continuously at `refillPerSec`.
 *
 * @since 0.1.0
 * @category models
 */
export const TokenBucket = Schema.Struct({
  kind: Schema.Literal("tokenBucket"),
  capacity: PositiveInt,
  // At least one token per ~11.6 days: slower rates make the refill horizon overflow exact arithmetic.
  refillPerSec: PositiveNumber.pipe(Schema.greaterThanOrEqualTo(1e-6))
})

/**
 * Fixed window: `limit` units per epoch-aligned window of `windowMs`.
 *
 * @since 0.1.0
 * @category models
 */
export const FixedWindow = Schema.Struct({
  kind: Schema.Literal("fixedWindow"),
  limit: PositiveInt,
  windowMs: PositiveInt
})

/**
 * Sliding window, estimated from `buckets` sub-window counters.
 *
 * @since 0.1.0
 * @category models
 */
export const SlidingWindow = Schema.Struct({
  kind: Schema.Literal("slidingWindow"),
  limit: PositiveInt,
  windowMs: PositiveInt,
  buckets: PositiveInt
})

/**
 * Exact sliding window: one log entry per admitted unit (memory grows with `limit`).
 *
 * @since 0.1.0
 * @category models
 */
export const SlidingWindowLog = Schema.Struct({
  kind: Schema.Literal("slidingWindowLog"),
  limit: PositiveInt,
  windowMs: PositiveInt
})

/**
 * The calendar and window cadences a quota resets on (its `resetCadence`).
 *
 * @since 0.3.0
 * @category models
 */
export const QuotaCadence = Schema.Literal("calendar-month", "calendar-week", "calendar-day", "fixed", "rolling")

/**
 * @since 0.3.0
 * @category models
 */
export type QuotaCadence = typeof QuotaCadence.Type

/** A fixed UTC offset in whole minutes, within ±14 h (no DST: the same offset all year). */
const OffsetMinutes = Schema.Int.pipe(Schema.between(-840, 840))

/**
 * The furthest epoch-ms a quota's `anchor` may be from 1970 (what a JS `Date` can hold), so the period
 * arithmetic stays exact.
 *
 * @since 0.3.0
 * @category constants
 */
export const MAX_QUOTA_ANCHOR_MS = 8_640_000_000_000_000

/**
 * A quota that resets at the start of each calendar month (the 1st, at midnight) at the fixed UTC offset
 * `offsetMinutes` (e.g. 330 for India, -300 for New York in winter; never DST-adjusted).
 *
 * @since 0.3.0
 * @category models
 */
export const MonthlyQuota = Schema.Struct({
  resetCadence: Schema.Literal("calendar-month"),
  kind: Schema.Literal("quota"),
  limit: PositiveInt,
  offsetMinutes: OffsetMinutes
})

/**
 * A quota that resets at the start of each day (midnight) at the fixed UTC offset `offsetMinutes`.
 *
 * @since 0.3.0
 * @category models
 */
export const DailyQuota = Schema.Struct({
  resetCadence: Schema.Literal("calendar-day"),
  kind: Schema.Literal("quota"),
  limit: PositiveInt,
  offsetMinutes: OffsetMinutes
})

/**
 * A quota that resets at the start of each week (`calendar-week`), on `weekStartsOn` (0 = Sunday … 6 =
 * Saturday; the file format's default is 1, Monday) at midnight of the fixed UTC offset `offsetMinutes`.
 *
 * @since 0.3.0
 * @category models
 */
export const WeeklyQuota = Schema.Struct({
  resetCadence: Schema.Literal("calendar-week"),
  kind: Schema.Literal("quota"),
  limit: PositiveInt,
  offsetMinutes: OffsetMinutes,
  weekStartsOn: Schema.Int.pipe(Schema.between(0, 6))
})

/**
 * A quota that resets every `periodMs`, counted from the epoch-ms `anchor` (0: epoch-aligned, as a fixed
 * window).
 *
 * @since 0.3.0
 * @category models
 */
export const FixedQuota = Schema.Struct({
  resetCadence: Schema.Literal("fixed"),
  kind: Schema.Literal("quota"),
  limit: PositiveInt,
  periodMs: PositiveInt,
  anchor: Schema.Int.pipe(Schema.between(-MAX_QUOTA_ANCHOR_MS, MAX_QUOTA_ANCHOR_MS))
})

/**
 * A quota over the trailing `periodMs` (`rolling`): a sliding window of `buckets` sub-windows, with the
 * sliding window's arithmetic, state and Redis scripts.
 *
 * @since 0.3.0
 * @category models
 */
export const RollingQuota = Schema.Struct({
  resetCadence: Schema.Literal("rolling"),
  kind: Schema.Literal("quota"),
  limit: PositiveInt,
  periodMs: PositiveInt,
  buckets: PositiveInt
})

/**
 * A quota: `limit` units per billing period, the period chosen by `resetCadence` (the ThrottleKit core's
 * `quota` strategy; its name stays `quota` whatever the cadence). Its members are told apart by
 * `resetCadence` (each lists it first, so decoding reports the offending field of the right one).
 *
 * @since 0.3.0
 * @category models
 */
export const Quota = Schema.Union(MonthlyQuota, WeeklyQuota, DailyQuota, FixedQuota, RollingQuota)

/**
 * @since 0.3.0
 * @category models
 */
export type Quota = typeof Quota.Type

/**
 * A quota as a member of `Strategy`: tagged by `kind` alone (as every other strategy), then decoded as
 * `Quota`, so a bad quota is reported by its own fields rather than as a mismatch of `kind`.
 */
const QuotaMember = Schema.Struct(
  { kind: Schema.Literal("quota") },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
  .pipe(Schema.compose(Quota, { strict: false }))

/**
 * One of the six rate strategies, discriminated by `kind` (and a quota by its `resetCadence`).
 *
 * @since 0.1.0
 * @category models
 */
export const Strategy = Schema.Union(
  Gcra,
  TokenBucket,
  FixedWindow,
  SlidingWindow,
  SlidingWindowLog,
  QuotaMember
)

/**
 * @since 0.1.0
 * @category models
 */
export type Strategy = typeof Strategy.Type

/**
 * The strategy names, as written in config files and on the Monitor wire.
 *
 * @since 0.1.0
 * @category models
 */
export type StrategyKind = Strategy["kind"]

/**
 * Two-tier leasing (GALE tier 1): a server keeps local credits leased in batches from the shared store.
 *
 * @since 0.1.0
 * @category models
 */
export const TwoTier = Schema.Struct({
  mode: Schema.Literal("leased", "strict", "cached-deny"),
  batch: PositiveInt,
  lowWater: Schema.Int.pipe(Schema.nonNegative()),
  windowCoupled: Schema.Boolean,
  /** Drop a key's leased credits once it has gone this long (ms) without a check (none: kept). @since 0.3.0 */
  returnIdleAfterMs: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category models
 */
export type TwoTier = typeof TwoTier.Type

/**
 * A fleet-wide budget per window, shared by `Check` (tier 1) and `Fleet.Reserve` (tier 2).
 *
 * @since 0.1.0
 * @category models
 */
export const Federated = Schema.Struct({
  batch: PositiveInt,
  region: Schema.String,
  prefix: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type Federated = typeof Federated.Type

/**
 * A rate limiter policy (served by check, checkMany, peek, forecast).
 *
 * @since 0.1.0
 * @category models
 */
export const LimiterPolicy = Schema.Struct({
  kind: Schema.Literal("limiter"),
  name: Schema.String,
  prefix: Schema.String,
  strategy: Strategy,
  maxKeys: PositiveInt,
  twoTier: Schema.optional(TwoTier),
  federated: Schema.optional(Federated),
  /**
   * Shadow mode: decide and record as usual, but always allow (a denial is answered as an allowance with
   * `Decision.shadowed` set, and counted by the Monitor and `/metrics` as a shadow denial). For rolling a
   * new limit out safely. Absent: enforced. @since 0.3.0
   */
  shadow: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type LimiterPolicy = typeof LimiterPolicy.Type

/**
 * A token budget per key per epoch-aligned window (served by debit). `shared` marks a `fleetBudget`.
 *
 * @since 0.1.0
 * @category models
 */
export const MeterPolicy = Schema.Struct({
  kind: Schema.Literal("meter"),
  name: Schema.String,
  prefix: Schema.String,
  budget: PositiveInt,
  windowMs: PositiveInt,
  maxKeys: PositiveInt,
  shared: Schema.Boolean,
  /**
   * Shadow mode: decide and record as usual, but always allow (a denial is answered as an allowance with
   * `Decision.shadowed` set, and counted by the Monitor and `/metrics` as a shadow denial). For rolling a
   * new limit out safely. Absent: enforced. @since 0.3.0
   */
  shadow: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type MeterPolicy = typeof MeterPolicy.Type

/**
 * How a concurrency ceiling moves: pinned (`fixed`), additive-increase / multiplicative-decrease
 * (`aimd`), or latency-gradient driven (`gradient2`). All contract on a dropped release.
 *
 * @since 0.1.0
 * @category models
 */
export const ConcurrencyAlgorithm = Schema.Literal("fixed", "aimd", "gradient2")

/**
 * The concurrency axis: one ceiling per policy (keyless), between `minLimit` and `maxLimit`.
 *
 * @since 0.1.0
 * @category models
 */
export const Concurrency = Schema.Struct({
  algorithm: ConcurrencyAlgorithm,
  minLimit: PositiveInt,
  maxLimit: PositiveInt,
  initialLimit: PositiveInt,
  backoffRatio: Schema.Number.pipe(Schema.greaterThanOrEqualTo(0.5), Schema.lessThan(1)),
  smoothing: Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1)),
  tolerance: Schema.Number.pipe(Schema.finite(), Schema.greaterThanOrEqualTo(1)),
  rttWindow: PositiveInt
})

/**
 * @since 0.1.0
 * @category models
 */
export type Concurrency = typeof Concurrency.Type

/**
 * A concurrency ceiling shared by a fleet (the file's `distributedConcurrency:` block): each node admits
 * locally against its share of one global ceiling, which the nodes' heartbeats to the coordinator (in
 * Redis, under `prefix` + `conc:` + the policy name) fold from their local ceilings (`aggregate`: the lower
 * median or the minimum) and split (`allocation`: equally, or by demand). A node whose heartbeats fail
 * admits nothing (`fail-closed`, the default) or only against its local ceiling (`local-only`). Its lease
 * at the coordinator lives twice `heartbeatMs`.
 *
 * @since 0.3.0
 * @category models
 */
export const DistributedConcurrency = Schema.Struct({
  aggregate: Schema.Literal("median", "min"),
  allocation: Schema.Literal("equal-split", "demand-proportional"),
  prefix: Schema.String,
  heartbeatMs: PositiveInt.pipe(Schema.lessThanOrEqualTo(86_400_000)),
  onCoordinatorOutage: Schema.Literal("fail-closed", "local-only")
})

/**
 * @since 0.3.0
 * @category models
 */
export type DistributedConcurrency = typeof DistributedConcurrency.Type

/**
 * A concurrency admitter (served by admit). With `rate`, it is a unified rate × concurrency admitter whose
 * rate axis is keyed by the request key.
 *
 * @since 0.1.0
 * @category models
 */
export const AdmitterPolicy = Schema.Struct({
  kind: Schema.Literal("admitter"),
  name: Schema.String,
  prefix: Schema.String,
  concurrency: Concurrency,
  rate: Schema.optional(Strategy),
  maxKeys: PositiveInt,
  /** The ceiling is shared by a fleet (see `DistributedConcurrency`). @since 0.3.0 */
  distributed: Schema.optional(DistributedConcurrency),
  /**
   * Shadow mode (see `LimiterPolicy.shadow`): a denied admission is answered allowed (`shadowed`) but
   * holds no slot (`leaseId` ""): the ceiling counts only the admissions it really admitted. @since 0.3.0
   */
  shadow: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type AdmitterPolicy = typeof AdmitterPolicy.Type

/**
 * Weighted fair escrow: one budget of `limit` units per epoch-aligned window of `windowMs`, split between
 * tenants (the request keys) by weight. Each tenant active in the window is guaranteed
 * `floor(weight * limit / total active weight)` and may borrow beyond it only what the other active
 * tenants' unused guarantees leave. A tenant not in `weights` has weight 1.
 *
 * @since 0.3.0
 * @category models
 */
export const FairEscrow = Schema.Struct({
  limit: PositiveInt,
  windowMs: PositiveInt,
  weights: Schema.Record({ key: Schema.String, value: PositiveNumber })
})

/**
 * @since 0.3.0
 * @category models
 */
export type FairEscrow = typeof FairEscrow.Type

/**
 * A fair escrow whose `limit` is one budget across regions (`federatedFairEscrow`): a weighted pool at
 * `prefix:key` grants each region a share by the total weight of its active tenants, and the region
 * splits its share between its tenants as a fair escrow does.
 *
 * @since 0.3.0
 * @category models
 */
export const FairFederation = Schema.Struct({
  region: Schema.String.pipe(Schema.minLength(1)),
  key: Schema.String.pipe(Schema.minLength(1)),
  prefix: Schema.String
})

/**
 * @since 0.3.0
 * @category models
 */
export type FairFederation = typeof FairFederation.Type

/**
 * A fair-escrow policy (`fairEscrow`, or `federatedFairEscrow` with `federation`), served by check: the
 * request key is the tenant. At most `maxKeys` tenants are tracked per window (past it the oldest is
 * forgotten, its spent units still counted against the budget). Its state lives in the serving process
 * (the pool of a federated one in Redis); `prefix` is the policy's key prefix, kept for the reports.
 *
 * @since 0.3.0
 * @category models
 */
export const FairPolicy = Schema.Struct({
  kind: Schema.Literal("fair"),
  name: Schema.String,
  prefix: Schema.String,
  fairEscrow: FairEscrow,
  maxKeys: PositiveInt,
  federation: Schema.optional(FairFederation),
  /**
   * Shadow mode: decide and record as usual, but always allow (a denial is answered as an allowance with
   * `Decision.shadowed` set, and counted by the Monitor and `/metrics` as a shadow denial). For rolling a
   * new limit out safely. Absent: enforced. @since 0.3.0
   */
  shadow: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.3.0
 * @category models
 */
export type FairPolicy = typeof FairPolicy.Type

/**
 * Any named policy.
 *
 * @since 0.1.0
 * @category models
 */
export const Policy = Schema.Union(LimiterPolicy, MeterPolicy, AdmitterPolicy, FairPolicy)

/**
 * @since 0.1.0
 * @category models
 */
export type Policy = typeof Policy.Type

/**
 * True when `policy` is in shadow mode (never denies; see `LimiterPolicy.shadow`).
 *
 * @since 0.3.0
 * @category utils
 */
export const isShadow = (policy: Policy): boolean => policy.shadow === true

/**
 * The per-policy key cap used when a config does not give one (state beyond it is evicted oldest first).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_MAX_KEYS = 100_000

/**
 * The store key of `key` under a policy: `prefix:key`, or `key` alone when the prefix is empty.
 *
 * @since 0.1.0
 * @category utils
 * @internal
 */
export const storeKey = (prefix: string, key: string): string => prefix === "" ? key : `${prefix}:${key}`

/**
 * The ceiling a strategy reports as `limit` in its decisions.
 *
 * @since 0.1.0
 * @category utils
 * @internal
 */
export const reportedLimit = (strategy: Strategy): number => {
  switch (strategy.kind) {
    case "gcra":
      return strategy.burst
    case "tokenBucket":
      return strategy.capacity
    default:
      return strategy.limit
  }
}

/**
 * The largest cost a strategy can ever admit in one call: a GCRA's `burst`, a token bucket's `capacity`,
 * a fixed, sliding or log window's `limit`, a quota's `limit`. A larger cost is denied whatever the
 * state and however long the caller waits (it is the `limit` the strategy reports in its decisions).
 *
 * @since 0.3.0
 * @category utils
 */
export const capacity = (strategy: Strategy): number => reportedLimit(strategy)

/**
 * The longest span of time a policy may describe: 100 years (of 365.25 days), in ms. Windows, periods
 * and the time a strategy takes to refill its whole capacity stay within it, so every `resetAt` and
 * `retryAfterMs` is a safe integer (epoch-ms now plus twice this is far below 2^53).
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_HORIZON_MS = 3_155_760_000_000

const DAY_MS = 86_400_000

/**
 * The longest period of a quota, in ms: 31 days for `calendar-month`, 7 for `calendar-week`, 1 for
 * `calendar-day`, else its `periodMs`.
 *
 * @since 0.3.0
 * @category utils
 */
export const quotaPeriodMs = (quota: Quota): number => {
  switch (quota.resetCadence) {
    case "calendar-month":
      return 31 * DAY_MS
    case "calendar-week":
      return 7 * DAY_MS
    case "calendar-day":
      return DAY_MS
    default:
      return quota.periodMs
  }
}

/**
 * The time a strategy takes to refill from empty to full (its window for windowed strategies, the
 * longest period for a quota), in ms.
 *
 * @since 0.2.0
 * @category utils
 */
export const horizonMs = (strategy: Strategy): number => {
  switch (strategy.kind) {
    case "gcra":
      return (strategy.periodMs / strategy.limit) * strategy.burst
    case "tokenBucket":
      return (strategy.capacity / strategy.refillPerSec) * 1000
    case "quota":
      return quotaPeriodMs(strategy)
    default:
      return strategy.windowMs
  }
}

/**
 * The largest cost a check of `strategy` accepts: the one whose wait (`retryAfterMs`) stays within
 * `MAX_HORIZON_MS`. Only the rate-based strategies have one below 2^53 − 1 (a windowed strategy's wait
 * is at most its window whatever the cost); for any policy the decoder accepts it is at least the
 * strategy's capacity, so every cost that can ever be allowed is accepted.
 *
 * @since 0.2.0
 * @category utils
 */
export const maxCost = (strategy: Strategy): number => {
  switch (strategy.kind) {
    case "gcra":
      return Math.min(Number.MAX_SAFE_INTEGER, Math.floor(MAX_HORIZON_MS / (strategy.periodMs / strategy.limit)))
    case "tokenBucket":
      return Math.min(Number.MAX_SAFE_INTEGER, Math.floor(MAX_HORIZON_MS * (strategy.refillPerSec / 1000)))
    default:
      return Number.MAX_SAFE_INTEGER
  }
}
