/**
 * The policies a limiter serves, as one validated value: `PolicySet` (unique, non-empty names of at most
 * 256 UTF-8 bytes; every policy meets its schema and the rules that relate its fields: the 100-year
 * horizon, the sliding-window (and rolling quota) bucket bounds, a concurrency block's limits, a leased
 * two-tier's low-water mark, a federated policy's windowed strategy), and `PolicyError`, the error both
 * the set and the policy file loader (`PolicyFile`) raise. Policies written in code and policies read
 * from a file meet the same rules with the same wording.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import {
  AdmitterPolicy,
  type Concurrency,
  FairPolicy,
  horizonMs,
  LimiterPolicy,
  MAX_HORIZON_MS,
  MeterPolicy,
  type Policy,
  type Strategy,
  type StrategyKind,
  type TwoTier
} from "./Policy.js"
import { type Decoded, describe, fail, type Locator, type Path, type Problem } from "./policyFile/problem.js"
import { policyNameProblem } from "./Validate.js"

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/**
 * A policy file (or a policy list written in code) was rejected. `path` locates the problem
 * (`limiters.api.burst`; `config` for the file as a whole), `reason` says what is wrong, `source` is the
 * file (or label) given to `parse`/`load`, and `line` the 1-based line of the offending field when known.
 *
 * Called `ConfigError` before 0.2; renamed so its tag no longer collides with Effect's own `ConfigError`
 * (a `layerConfig` can fail with both, and `catchTag` must tell them apart).
 *
 * @since 0.2.0
 * @category errors
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  path: Schema.String,
  reason: Schema.String,
  source: Schema.optional(Schema.String),
  line: Schema.optional(Schema.Int)
}) {
  override get message(): string {
    const where = [
      ...(this.source === undefined ? [] : [this.source]),
      ...(this.line === undefined ? [] : [`line ${this.line}`])
    ]
    return `${this.path}: ${this.reason}${where.length === 0 ? "" : ` (${where.join(", ")})`}`
  }
}

const PLAIN_SEGMENT = /^[A-Za-z0-9_-]+$/

/** `["limiters", "api", "burst"]` → `limiters.api.burst`; odd names are quoted: `limiters["a b"]`. */
const formatPath = (path: Path): string => {
  if (path.length === 0) return "config"
  let out = ""
  for (const segment of path) {
    if (PLAIN_SEGMENT.test(segment)) out += out === "" ? segment : `.${segment}`
    else out += `${out === "" ? "config" : ""}[${JSON.stringify(segment)}]`
  }
  return out
}

/**
 * `problem` as the `PolicyError` users see: its path formatted, `source` carried, and its line (when a
 * `locator` knows the text) for a field located by path.
 *
 * @since 0.2.0
 * @internal
 */
export const toPolicyError = (
  problem: Problem,
  source: string | undefined,
  locator: Locator | undefined
): PolicyError => {
  const line = problem.line ?? (problem.path.length === 0 ? undefined : locator?.lineOf(problem.path))
  // A syntax error already names its line in `reason`; keep `line` for fields located by path.
  const located = problem.line === undefined ? line : undefined
  return new PolicyError({
    path: formatPath(problem.path),
    reason: problem.reason,
    ...(source === undefined ? {} : { source }),
    ...(located === undefined ? {} : { line: located })
  })
}

// ---------------------------------------------------------------------------------------------------------
// The rules a policy must meet
// ---------------------------------------------------------------------------------------------------------

const validationOptions = { errors: "first", onExcessProperty: "error" } as const
const validateLimiter = Schema.decodeUnknownEither(LimiterPolicy, validationOptions)
const validateMeter = Schema.decodeUnknownEither(MeterPolicy, validationOptions)
const validateAdmitter = Schema.decodeUnknownEither(AdmitterPolicy, validationOptions)
const validateFair = Schema.decodeUnknownEither(FairPolicy, validationOptions)

/** Schema-checks one policy (by its kind) and maps the first issue to a path under `limiters.<name>`. */
const validatePolicy = (policy: Policy, index: number): Decoded<Policy> => {
  const candidate: unknown = policy
  const name = typeof policy.name === "string" ? policy.name : `#${index}`
  const base: Path = ["limiters", name]
  const decoded: Either.Either<Policy, ParseResult.ParseError> | undefined = policy.kind === "limiter"
    ? validateLimiter(candidate)
    : policy.kind === "meter"
    ? validateMeter(candidate)
    : policy.kind === "admitter"
    ? validateAdmitter(candidate)
    : policy.kind === "fair"
    ? validateFair(candidate)
    : undefined
  if (decoded === undefined) {
    return fail([...base, "kind"], `expected "limiter", "meter", "admitter" or "fair", got ${describe(policy.kind)}`)
  }
  return Either.mapLeft(decoded, (error) => {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
    return issue === undefined
      ? { path: base, reason: "is not a valid policy" }
      : { path: [...base, ...issue.path.map(String)], reason: issue.message }
  })
}

/**
 * The most sub-windows a sliding window may have: every check sums each one (here and in the Lua, which
 * holds Redis while it runs).
 */
const MAX_SLIDING_BUCKETS = 10_000

/**
 * Why a strategy spans more time than a policy may (see `MAX_HORIZON_MS`) or cuts its window finer than
 * a check can afford, or undefined.
 */
const horizonProblem = (strategy: Strategy): string | undefined => {
  const sliding = strategy.kind === "slidingWindow"
    ? { buckets: strategy.buckets, windowMs: strategy.windowMs, window: "windowMs" }
    : strategy.kind === "quota" && strategy.resetCadence === "rolling"
    ? { buckets: strategy.buckets, windowMs: strategy.periodMs, window: "periodMs" }
    : undefined
  if (sliding !== undefined && sliding.buckets > Math.min(MAX_SLIDING_BUCKETS, sliding.windowMs)) {
    return `buckets must be at most ${MAX_SLIDING_BUCKETS} and at most ${sliding.window} (a bucket is at least ` +
      `1 ms wide), got ${sliding.buckets} buckets over ${sliding.windowMs} ms`
  }
  const horizon = horizonMs(strategy)
  if (horizon <= MAX_HORIZON_MS) return undefined
  const what = strategy.kind === "gcra"
    ? "refilling its burst (periodMs / limit * burst)"
    : strategy.kind === "tokenBucket"
    ? "refilling its capacity (capacity / refillPerSec)"
    : strategy.kind === "quota"
    ? "its period"
    : "its window"
  return `${what} takes ${Math.round(horizon)} ms, more than the ${MAX_HORIZON_MS} ms (100 years) a policy may span`
}

/** The rules a typed policy must meet beyond its schema (the ones that relate two fields). */
const policyRuleProblem = (policy: Policy): Problem | undefined => {
  const base: Path = ["limiters", policy.name]
  if (policy.kind === "meter") {
    return policy.windowMs <= MAX_HORIZON_MS ? undefined : {
      path: [...base, "windowMs"],
      reason: `must be at most ${MAX_HORIZON_MS} ms (100 years), got ${policy.windowMs}`
    }
  }
  if (policy.kind === "fair") {
    return policy.fairEscrow.windowMs <= MAX_HORIZON_MS ? undefined : {
      path: [...base, "fairEscrow", "windowMs"],
      reason: `must be at most ${MAX_HORIZON_MS} ms (100 years), got ${policy.fairEscrow.windowMs}`
    }
  }
  const strategy = policy.kind === "limiter" ? policy.strategy : policy.rate
  const tooLong = strategy === undefined ? undefined : horizonProblem(strategy)
  if (tooLong !== undefined) {
    return { path: [...base, policy.kind === "limiter" ? "strategy" : "rate"], reason: tooLong }
  }
  if (policy.kind === "admitter") {
    const reason = concurrencyRuleProblem(policy.concurrency)
    return reason === undefined ? undefined : { path: [...base, "concurrency", reason[0]], reason: reason[1] }
  }
  if (policy.kind === "limiter" && policy.federated !== undefined && !isWindowed(policy.strategy.kind)) {
    return { path: [...base, "strategy"], reason: federatedStrategyReason(policy.strategy.kind) }
  }
  if (policy.kind === "limiter" && policy.twoTier !== undefined) {
    const reason = twoTierRuleProblem(policy.twoTier)
    return reason === undefined ? undefined : { path: [...base, "twoTier", "lowWater"], reason }
  }
  return undefined
}

/**
 * A leased policy refreshes in the background once its credits drop to `lowWater`; at `batch` or above
 * every grant would leave it at the mark, refreshing without end, so `lowWater` must stay below `batch`.
 */
const twoTierRuleProblem = (twoTier: TwoTier): string | undefined =>
  twoTier.mode === "leased" && twoTier.lowWater >= twoTier.batch
    ? `must be less than batch (${twoTier.batch}), got ${twoTier.lowWater}`
    : undefined

const concurrencyRuleProblem = (c: Concurrency): readonly [string, string] | undefined => {
  if (c.minLimit > c.maxLimit) {
    return ["maxLimit", `must be at least minLimit (${c.minLimit}), got ${c.maxLimit}`]
  }
  if (c.initialLimit < c.minLimit || c.initialLimit > c.maxLimit) {
    return [
      "initialLimit",
      `must be between minLimit (${c.minLimit}) and maxLimit (${c.maxLimit}), got ${c.initialLimit}`
    ]
  }
  if (c.algorithm === "fixed" && c.minLimit !== c.maxLimit) {
    return [
      "algorithm",
      `fixed pins one ceiling, so minLimit and maxLimit must be equal (got ${c.minLimit} and ${c.maxLimit})`
    ]
  }
  return undefined
}

/**
 * Whether a strategy counts in windows (what a federated policy needs).
 *
 * @since 0.2.0
 * @internal
 */
export const isWindowed = (kind: StrategyKind): boolean => kind === "fixedWindow" || kind === "slidingWindow"

/**
 * Why a federated policy cannot use the strategy `kind`.
 *
 * @since 0.2.0
 * @internal
 */
export const federatedStrategyReason = (kind: StrategyKind): string =>
  `federated needs a windowed strategy (fixedWindow or slidingWindow), got ${kind}`

// ---------------------------------------------------------------------------------------------------------
// PolicySet
// ---------------------------------------------------------------------------------------------------------

/**
 * Checks `policies` in order (schema, non-empty unique names of at most 256 bytes, related-field rules)
 * and builds the set,
 * or answers the first problem by its path (which the file loader then locates in its text).
 *
 * @since 0.2.0
 * @internal
 */
export const makePolicySet = (policies: Iterable<Policy>): Decoded<PolicySet> => {
  const valid: Array<Policy> = []
  const seen = new Set<string>()
  let index = 0
  for (const policy of policies) {
    const checked = validatePolicy(policy, index++)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    const name = checked.right.name
    if (name === "") return fail(["limiters", name], "policy names must not be empty")
    const tooLong = policyNameProblem(name)
    if (tooLong !== undefined) return fail(["limiters", name], `a policy name ${tooLong}`)
    if (seen.has(name)) return fail(["limiters", name], "duplicate policy name")
    const broken = policyRuleProblem(checked.right)
    if (broken !== undefined) return Either.left(broken)
    seen.add(name)
    valid.push(checked.right)
  }
  return Either.right(construct(valid))
}

/** The private `PolicySet` constructor, for `makePolicySet` only (set by the class's static block). */
let construct: (policies: ReadonlyArray<Policy>) => PolicySet

/**
 * An immutable, validated set of named policies, in declaration (file) order. Names are unique,
 * non-empty and at most 256 UTF-8 bytes; every policy satisfies its schema.
 *
 * @since 0.1.0
 * @category models
 */
export class PolicySet implements Iterable<Policy> {
  /**
   * The policies in declaration order.
   *
   * @since 0.1.0
   */
  readonly policies: ReadonlyArray<Policy>
  /**
   * The policy names in declaration order.
   *
   * @since 0.1.0
   */
  readonly names: ReadonlyArray<string>
  private readonly byName: ReadonlyMap<string, Policy>

  private constructor(policies: ReadonlyArray<Policy>) {
    this.policies = Object.freeze([...policies])
    this.names = Object.freeze(policies.map((policy) => policy.name))
    this.byName = new Map(policies.map((policy) => [policy.name, policy]))
  }

  /**
   * Validates `policies` (schema, non-empty unique names, related-field rules) and builds a set in the
   * given order. Fails with the first problem, e.g. `limiters.api: duplicate policy name`.
   *
   * @example
   * ```ts
   * import { Effect } from "effect"
   * import { PolicySet } from "throttlekit-effect"
   *
   * // Policies written in code meet the rules a policy file meets, with the same wording.
   * const policies = PolicySet.make([
   *   {
   *     kind: "limiter",
   *     name: "api",
   *     prefix: "api",
   *     maxKeys: 10_000,
   *     strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }
   *   },
   *   {
   *     kind: "meter",
   *     name: "api",
   *     prefix: "tokens",
   *     budget: 10_000,
   *     windowMs: 60_000,
   *     maxKeys: 1000,
   *     shared: false
   *   }
   * ])
   *
   * Effect.runPromise(Effect.flip(policies)).then((error) => console.log(error.message))
   * // "limiters.api: duplicate policy name"
   * ```
   *
   * @since 0.1.0
   */
  static make(policies: Iterable<Policy>): Effect.Effect<PolicySet, PolicyError> {
    return Effect.suspend(() => PolicySet.validate(policies))
  }

  /**
   * `make` without an Effect runtime: the set, or the first problem, as an `Either`.
   *
   * @since 0.2.0
   */
  static validate(policies: PolicySet | Iterable<Policy>): Either.Either<PolicySet, PolicyError> {
    if (policies instanceof PolicySet) return Either.right(policies)
    return Either.mapLeft(makePolicySet(policies), (p) => toPolicyError(p, undefined, undefined))
  }

  /**
   * `policies` as a validated set: a `PolicySet` as it is, anything else through `make` (so policies
   * written in code meet the same rules, with the same wording, as a config file's).
   *
   * @since 0.2.0
   */
  static from(policies: PolicySet | Iterable<Policy>): Effect.Effect<PolicySet, PolicyError> {
    return Effect.suspend(() => PolicySet.validate(policies))
  }

  /** The set with no policies. */
  static readonly empty: PolicySet = new PolicySet([])

  static {
    construct = (policies) => new PolicySet(policies)
  }

  /**
   * The policy called `name`, if any.
   *
   * @since 0.1.0
   */
  get(name: string): Option.Option<Policy> {
    return Option.fromNullable(this.byName.get(name))
  }

  /**
   * Whether a policy called `name` exists.
   *
   * @since 0.1.0
   */
  has(name: string): boolean {
    return this.byName.has(name)
  }

  /** How many policies the set holds. */
  get size(): number {
    return this.policies.length
  }

  /**
   * The policies in declaration order.
   *
   * @since 0.1.0
   */
  [Symbol.iterator](): Iterator<Policy> {
    return this.policies[Symbol.iterator]()
  }

  /**
   * The set as JSON: its policies in declaration order.
   *
   * @since 0.2.0
   */
  toJSON(): { readonly _id: "PolicySet"; readonly policies: ReadonlyArray<Policy> } {
    return { _id: "PolicySet", policies: this.policies }
  }
}
