/**
 * Policy config files: the `.throttlekit.yaml` / `.json` format the reference `throttlekit-server` reads,
 * decoded into the typed model of `Policy.ts`.
 *
 * The format: a top-level map with a required `limiters:` map (policy name → settings), an optional
 * `version: 1`, optional `defaults: { prefix }`, and `capture:` / `replay:` blocks that are accepted and
 * ignored. Text whose trimmed start is `{` or `[` is JSON; anything else is YAML 1.2 (a real parser, so
 * block lists, anchors and nested flow maps all work, unlike the reference's YAML subset).
 *
 * Deliberate differences from the reference loader:
 * - It is strict: an unknown field anywhere is an error naming its path (the reference silently ignores
 *   unknown fields, so a typo such as `brust: 5` quietly falls back to the default there).
 * - It validates every value (types, ranges, whole milliseconds) instead of passing it to the core.
 * - `quota`, `fairEscrow` and `federatedFairEscrow` are load errors ("not supported yet").
 * - `distributedConcurrency` is read as a local `concurrency` admitter: its extra knobs (`aggregate`,
 *   `prefix`, `heartbeatMs`, `onCoordinatorOutage`) are validated and then not modelled. Likewise
 *   `twoTier.returnIdleAfterMs`.
 * - Duplicate keys are errors in both formats (the YAML parser reports them; for JSON this module scans for
 *   them, since `JSON.parse` keeps the last one silently).
 * - Policy-level `maxKeys` is accepted on limiters and admitters (a meter takes it inside its block).
 * - A concurrency block may say `algorithm: fixed` (a pinned ceiling); `minLimit == maxLimit` also pins it.
 * - A leased `twoTier` block needs `lowWater` below `batch` (the reference takes any value).
 *
 * Errors: loading stops at the first problem, in file order, and fails with one `ConfigError` naming the
 * path of the offending field (`limiters.api.burst`) and the reason. A bad file never yields a partial
 * `PolicySet`.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { type Document, isAlias, isMap, isScalar, LineCounter, parseDocument } from "yaml"
import {
  AdmitterPolicy,
  type Concurrency,
  DEFAULT_MAX_KEYS,
  type Federated,
  horizonMs,
  LimiterPolicy,
  MAX_HORIZON_MS,
  MeterPolicy,
  type Policy,
  type Strategy,
  type StrategyKind,
  type TwoTier
} from "./Policy.js"

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/**
 * A config file (or a programmatic policy list) was rejected. `path` locates the problem
 * (`limiters.api.burst`; `config` for the file as a whole), `reason` says what is wrong, `source` is the
 * file (or label) given to `parse`/`load`, and `line` the 1-based line of the offending field when known.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
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

/** Segments from the top of the file down to a field; `[]` is the file itself. */
type Path = ReadonlyArray<string>

/** A problem found while decoding, before it is located in a file. */
interface Problem {
  readonly path: Path
  readonly reason: string
  /** Set only for syntax errors, whose line comes from the parser rather than from the path. */
  readonly line?: number
}

type Decoded<A> = Either.Either<A, Problem>

const fail = (path: Path, reason: string): Decoded<never> => Either.left({ path, reason })

const done: Decoded<void> = Either.right(undefined)

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

const toConfigError = (problem: Problem, source: string | undefined, locator: Locator | undefined): ConfigError => {
  const line = problem.line ?? (problem.path.length === 0 ? undefined : locator?.lineOf(problem.path))
  // A syntax error already names its line in `reason`; keep `line` for fields located by path.
  const located = problem.line === undefined ? line : undefined
  return new ConfigError({
    path: formatPath(problem.path),
    reason: problem.reason,
    ...(source === undefined ? {} : { source }),
    ...(located === undefined ? {} : { line: located })
  })
}

// ---------------------------------------------------------------------------------------------------------
// PolicySet
// ---------------------------------------------------------------------------------------------------------

const validationOptions = { errors: "first", onExcessProperty: "error" } as const
const validateLimiter = Schema.decodeUnknownEither(LimiterPolicy, validationOptions)
const validateMeter = Schema.decodeUnknownEither(MeterPolicy, validationOptions)
const validateAdmitter = Schema.decodeUnknownEither(AdmitterPolicy, validationOptions)

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
    : undefined
  if (decoded === undefined) {
    return fail([...base, "kind"], `expected "limiter", "meter" or "admitter", got ${describe(policy.kind)}`)
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
  if (strategy.kind === "slidingWindow" && strategy.buckets > Math.min(MAX_SLIDING_BUCKETS, strategy.windowMs)) {
    return `buckets must be at most ${MAX_SLIDING_BUCKETS} and at most windowMs (a bucket is at least 1 ms wide), ` +
      `got ${strategy.buckets} buckets over ${strategy.windowMs} ms`
  }
  const horizon = horizonMs(strategy)
  if (horizon <= MAX_HORIZON_MS) return undefined
  const what = strategy.kind === "gcra"
    ? "refilling its burst (periodMs / limit * burst)"
    : strategy.kind === "tokenBucket"
    ? "refilling its capacity (capacity / refillPerSec)"
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

const makePolicySet = (policies: Iterable<Policy>): Decoded<PolicySet> => {
  const valid: Array<Policy> = []
  const seen = new Set<string>()
  let index = 0
  for (const policy of policies) {
    const checked = validatePolicy(policy, index++)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    const name = checked.right.name
    if (name === "") return fail(["limiters", name], "policy names must not be empty")
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
 * An immutable, validated set of named policies, in declaration (file) order. Names are unique and
 * non-empty; every policy satisfies its schema.
 *
 * @since 0.1.0
 * @category models
 */
export class PolicySet implements Iterable<Policy> {
  /** The policies in declaration order. */
  readonly policies: ReadonlyArray<Policy>
  /** The policy names in declaration order. */
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
   */
  static make(policies: Iterable<Policy>): Effect.Effect<PolicySet, ConfigError> {
    return Effect.suspend(() => PolicySet.validate(policies))
  }

  /** `make` without an Effect runtime: the set, or the first problem, as an `Either`. */
  static validate(policies: PolicySet | Iterable<Policy>): Either.Either<PolicySet, ConfigError> {
    if (policies instanceof PolicySet) return Either.right(policies)
    return Either.mapLeft(makePolicySet(policies), (p) => toConfigError(p, undefined, undefined))
  }

  /**
   * `policies` as a validated set: a `PolicySet` as it is, anything else through `make` (so policies
   * written in code meet the same rules, with the same wording, as a config file's).
   */
  static from(policies: PolicySet | Iterable<Policy>): Effect.Effect<PolicySet, ConfigError> {
    return Effect.suspend(() => PolicySet.validate(policies))
  }

  /** The set with no policies. */
  static readonly empty: PolicySet = new PolicySet([])

  static {
    construct = (policies) => new PolicySet(policies)
  }

  /** The policy called `name`, if any. */
  get(name: string): Option.Option<Policy> {
    return Option.fromNullable(this.byName.get(name))
  }

  /** Whether a policy called `name` exists. */
  has(name: string): boolean {
    return this.byName.has(name)
  }

  /** How many policies the set holds. */
  get size(): number {
    return this.policies.length
  }

  [Symbol.iterator](): Iterator<Policy> {
    return this.policies[Symbol.iterator]()
  }

  toJSON(): { readonly _id: "PolicySet"; readonly policies: ReadonlyArray<Policy> } {
    return { _id: "PolicySet", policies: this.policies }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Value readers: each checks one raw value and says why it is unusable
// ---------------------------------------------------------------------------------------------------------

type Read<A> = (value: unknown) => Either.Either<A, string>

/** A short, human description of a raw value for error messages. */
const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (value === undefined) return "nothing"
  if (typeof value === "string") {
    const quoted = JSON.stringify(value)
    return quoted.length > 60 ? `${quoted.slice(0, 57)}…"` : quoted
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value)
  if (Array.isArray(value)) return "a list"
  if (ArrayBuffer.isView(value)) return "binary data"
  if (typeof value === "object") return "a map"
  return `a ${typeof value}`
}

const quoteHint = (value: unknown): string =>
  typeof value === "number" || typeof value === "boolean" ? " (quote it to make it a string)" : ""

const MAX_SAFE = Number.MAX_SAFE_INTEGER

const positiveInt: Read<number> = (value) => {
  if (typeof value === "number" && Number.isInteger(value) && value >= 1) {
    return value <= MAX_SAFE
      ? Either.right(value)
      : Either.left(`expected a positive integer at most ${MAX_SAFE}, got ${describe(value)}`)
  }
  return Either.left(`expected a positive integer, got ${describe(value)}`)
}

const nonNegativeInt: Read<number> = (value) =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_SAFE
    ? Either.right(value)
    : Either.left(`expected a whole number ≥ 0, got ${describe(value)}`)

/** A finite number accepted by `inRange`, described by `range` (e.g. `in (0, 1]`). */
const numberWhere = (range: string, inRange: (n: number) => boolean): Read<number> => (value) =>
  typeof value === "number" && Number.isFinite(value) && inRange(value)
    ? Either.right(value)
    : Either.left(`expected a number ${range}, got ${describe(value)}`)

const positiveNumber = numberWhere("> 0", (n) => n > 0)

const boolean: Read<boolean> = (value) =>
  typeof value === "boolean" ? Either.right(value) : Either.left(`expected true or false, got ${describe(value)}`)

const string: Read<string> = (value) =>
  typeof value === "string"
    ? Either.right(value)
    : Either.left(`expected a string, got ${describe(value)}${quoteHint(value)}`)

const nonEmptyString: Read<string> = (value) =>
  typeof value === "string" && value !== ""
    ? Either.right(value)
    : Either.left(`expected a non-empty string, got ${describe(value)}${quoteHint(value)}`)

const oneOf = <const L extends string>(choices: ReadonlyArray<L>): Read<L> => (value) => {
  const match = choices.find((choice) => choice === value)
  return match === undefined
    ? Either.left(`expected one of ${choices.join(", ")}, got ${describe(value)}`)
    : Either.right(match)
}

const DURATION = /^\s*(\d+)(?:\.(\d+))?\s*(ms|s|m|h|d)?\s*$/
const UNIT_MS: Readonly<Record<string, bigint>> = { ms: 1n, s: 1_000n, m: 60_000n, h: 3_600_000n, d: 86_400_000n }
const DURATION_HINT = "a duration such as 250ms, 30s, 1.5s, 1m, 1h or 2d, or a number of milliseconds"

/**
 * A positive duration in whole milliseconds: a number (ms) or `<number><unit?>` with unit ms, s, m, h or d
 * (none = ms). Decimals are computed exactly, so `1.1s` is 1100 ms and `0.5ms` is rejected.
 */
const duration: Read<number> = (value) => {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value <= 0) {
      return Either.left(`expected a positive duration, got ${describe(value)}`)
    }
    if (!Number.isInteger(value)) {
      return Either.left(`expected a whole number of milliseconds, got ${describe(value)}`)
    }
    return value <= MAX_SAFE
      ? Either.right(value)
      : Either.left(`expected a duration of at most ${MAX_SAFE} ms, got ${describe(value)}`)
  }
  if (typeof value !== "string") return Either.left(`expected ${DURATION_HINT}, got ${describe(value)}`)
  const match = DURATION.exec(value)
  if (match === null) return Either.left(`expected ${DURATION_HINT}, got ${describe(value)}`)
  const whole = match[1] ?? "0"
  const fraction = match[2] ?? ""
  const unit = UNIT_MS[match[3] ?? "ms"] ?? 1n
  const scaled = BigInt(whole + fraction) * unit
  const denominator = 10n ** BigInt(fraction.length)
  if (scaled === 0n) return Either.left(`expected a positive duration, got ${describe(value)}`)
  if (scaled % denominator !== 0n) {
    return Either.left(`expected a whole number of milliseconds, got ${describe(value)}`)
  }
  const ms = scaled / denominator
  return ms <= BigInt(MAX_SAFE)
    ? Either.right(Number(ms))
    : Either.left(`expected a duration of at most ${MAX_SAFE} ms, got ${describe(value)}`)
}

// ---------------------------------------------------------------------------------------------------------
// Sections: a raw map being decoded, and where it sits
// ---------------------------------------------------------------------------------------------------------

type RawMap = Readonly<Record<string, unknown>>

/** A plain map (YAML mapping / JSON object), not a list, a buffer or a class instance. */
const isRawMap = (value: unknown): value is RawMap => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

interface Section {
  readonly path: Path
  readonly map: RawMap
}

const at = (section: Section, key: string): Path => [...section.path, key]

const has = (section: Section, key: string): boolean => Object.hasOwn(section.map, key)

const optional = <A>(section: Section, key: string, read: Read<A>): Decoded<A | undefined> =>
  has(section, key)
    ? Either.mapLeft(read(section.map[key]), (reason) => ({ path: at(section, key), reason }))
    : Either.right(undefined)

const withDefault = <A>(section: Section, key: string, read: Read<A>, fallback: A): Decoded<A> =>
  Either.map(optional(section, key, read), (value) => value === undefined ? fallback : value)

const required = <A>(section: Section, key: string, read: Read<A>, hint = "required"): Decoded<A> =>
  has(section, key)
    ? Either.mapLeft(read(section.map[key]), (reason) => ({ path: at(section, key), reason }))
    : fail(at(section, key), hint)

/** Fails on the first field of `section` that is not in `allowed`. */
const onlyFields = (section: Section, allowed: ReadonlyArray<string>, owner: string): Decoded<void> => {
  for (const key of Object.keys(section.map)) {
    if (!allowed.includes(key)) return fail(at(section, key), `unknown field; ${owner} takes ${allowed.join(", ")}`)
  }
  return done
}

/** The map under `key`, which must be a map (an empty one means "all defaults"). */
const subsection = (section: Section, key: string): Decoded<Section> => {
  const value = section.map[key]
  return isRawMap(value)
    ? Either.right({ path: at(section, key), map: value })
    : fail(
      at(section, key),
      `expected a map of settings, got ${describe(value)} (write \`${key}: {}\` for the defaults)`
    )
}

// ---------------------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------------------

const STRATEGY_FIELDS: Readonly<Record<StrategyKind, ReadonlyArray<string>>> = {
  gcra: ["limit", "period", "periodMs", "windowMs", "burst"],
  tokenBucket: ["capacity", "refillPerSec"],
  fixedWindow: ["limit", "period", "windowMs"],
  slidingWindow: ["limit", "period", "windowMs", "buckets"],
  slidingWindowLog: ["limit", "period", "windowMs"]
}

const STRATEGY_KINDS: ReadonlyArray<StrategyKind> = [
  "gcra",
  "tokenBucket",
  "fixedWindow",
  "slidingWindow",
  "slidingWindowLog"
]

const strategyKind = (section: Section): Decoded<StrategyKind> => {
  const path = at(section, "strategy")
  if (!has(section, "strategy")) {
    return fail(
      path,
      `required: one of ${STRATEGY_KINDS.join(", ")} (or a block such as tokenBudget or concurrency)`
    )
  }
  const value = section.map.strategy
  if (typeof value !== "string") return fail(path, `expected a strategy name, got ${describe(value)}`)
  if (value === "quota") return fail(path, "the quota strategy is not supported by throttlekit-effect yet")
  const kind = STRATEGY_KINDS.find((known) => known === value)
  return kind === undefined
    ? fail(path, `unknown strategy ${describe(value)}; expected one of ${STRATEGY_KINDS.join(", ")}`)
    : Either.right(kind)
}

/** The window length: `period` wins over the millisecond fields, in the order given. */
const windowLength = (section: Section, fields: ReadonlyArray<string>): Decoded<number> =>
  Either.gen(function*() {
    let chosen: number | undefined
    for (const field of fields) {
      const value = yield* optional(section, field, duration)
      if (chosen === undefined) chosen = value
    }
    if (chosen === undefined) {
      return yield* fail(at(section, "period"), `required (e.g. period: 1s, or ${fields.slice(1).join(" / ")} in ms)`)
    }
    return chosen
  })

const decodeStrategy = (section: Section, kind: StrategyKind): Decoded<Strategy> =>
  Either.gen(function*() {
    switch (kind) {
      case "gcra": {
        const limit = yield* required(section, "limit", positiveInt)
        const periodMs = yield* windowLength(section, ["period", "periodMs", "windowMs"])
        const burst = yield* withDefault(section, "burst", positiveInt, limit)
        return { kind, limit, periodMs, burst }
      }
      case "tokenBucket": {
        const capacity = yield* required(section, "capacity", positiveInt)
        const refillPerSec = yield* required(section, "refillPerSec", positiveNumber)
        return { kind, capacity, refillPerSec }
      }
      case "fixedWindow":
      case "slidingWindowLog": {
        const limit = yield* required(section, "limit", positiveInt)
        const windowMs = yield* windowLength(section, ["period", "windowMs"])
        return { kind, limit, windowMs }
      }
      case "slidingWindow": {
        const limit = yield* required(section, "limit", positiveInt)
        const windowMs = yield* windowLength(section, ["period", "windowMs"])
        const buckets = yield* withDefault(section, "buckets", positiveInt, 10)
        return { kind, limit, windowMs, buckets }
      }
    }
  })

const isWindowed = (kind: StrategyKind): boolean => kind === "fixedWindow" || kind === "slidingWindow"

const federatedStrategyReason = (kind: StrategyKind): string =>
  `federated needs a windowed strategy (fixedWindow or slidingWindow), got ${kind}`

// ---------------------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------------------

/** The blocks that choose a policy's kind, in the reference's dispatch order. At most one per policy. */
const KIND_BLOCKS = [
  "tokenBudget",
  "fleetBudget",
  "federated",
  "fairEscrow",
  "federatedFairEscrow",
  "concurrency",
  "distributedConcurrency",
  "twoTier"
] as const

type KindBlock = typeof KIND_BLOCKS[number]

const andList = (items: ReadonlyArray<string>): string =>
  items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`

const prefixOf = (section: Section, name: string, defaultPrefix: string | undefined): Decoded<string> =>
  Either.map(optional(section, "prefix", string), (own) => own ?? defaultPrefix ?? name)

const decodePolicy = (name: string, value: unknown, defaultPrefix: string | undefined): Decoded<Policy> => {
  const path: Path = ["limiters", name]
  if (!isRawMap(value)) return fail(path, `expected a map of policy settings, got ${describe(value)}`)
  const section: Section = { path, map: value }
  const blocks = KIND_BLOCKS.filter((block) => has(section, block))
  if (blocks.length > 1) {
    return fail(path, `has ${andList(blocks)} blocks; a policy carries at most one of ${KIND_BLOCKS.join(", ")}`)
  }
  const block: KindBlock | undefined = blocks[0]
  switch (block) {
    case undefined:
    case "twoTier":
    case "federated":
      return decodeLimiter(name, section, defaultPrefix, block)
    case "tokenBudget":
    case "fleetBudget":
      return decodeMeter(name, section, defaultPrefix, block)
    case "concurrency":
    case "distributedConcurrency":
      return decodeAdmitter(name, section, defaultPrefix, block)
    case "fairEscrow":
    case "federatedFairEscrow":
      return fail(at(section, block), `${block} policies are not supported by throttlekit-effect yet`)
  }
}

const decodeLimiter = (
  name: string,
  section: Section,
  defaultPrefix: string | undefined,
  block: "twoTier" | "federated" | undefined
): Decoded<LimiterPolicy> =>
  Either.gen(function*() {
    const kind = yield* strategyKind(section)
    const fields = ["strategy", ...STRATEGY_FIELDS[kind], "prefix", "maxKeys", ...(block === undefined ? [] : [block])]
    yield* onlyFields(section, fields, `a ${kind} policy${block === undefined ? "" : ` with ${block}`}`)
    if (block === "federated" && !isWindowed(kind)) {
      return yield* fail(at(section, "strategy"), federatedStrategyReason(kind))
    }
    const strategy = yield* decodeStrategy(section, kind)
    const prefix = yield* prefixOf(section, name, defaultPrefix)
    const maxKeys = yield* withDefault(section, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const policy: LimiterPolicy = { kind: "limiter", name, prefix, strategy, maxKeys }
    if (block === "twoTier") return { ...policy, twoTier: yield* decodeTwoTier(yield* subsection(section, block)) }
    if (block === "federated") {
      return { ...policy, federated: yield* decodeFederated(yield* subsection(section, block)) }
    }
    return policy
  })

const decodeTwoTier = (section: Section): Decoded<TwoTier> =>
  Either.gen(function*() {
    yield* onlyFields(section, ["mode", "batch", "lowWater", "windowCoupled", "returnIdleAfterMs"], "twoTier")
    const mode = yield* withDefault(section, "mode", oneOf(["leased", "strict", "cached-deny"]), "leased")
    const batch = mode === "leased"
      ? yield* required(section, "batch", positiveInt, "required in leased mode")
      : yield* withDefault(section, "batch", positiveInt, 16)
    const lowWater = yield* withDefault(section, "lowWater", nonNegativeInt, 0)
    const windowCoupled = yield* withDefault(section, "windowCoupled", boolean, false)
    // Accepted for compatibility with the reference; not modelled here.
    yield* optional(section, "returnIdleAfterMs", duration)
    return { mode, batch, lowWater, windowCoupled }
  })

const decodeFederated = (section: Section): Decoded<Federated> =>
  Either.gen(function*() {
    yield* onlyFields(section, ["batch", "region", "prefix"], "federated")
    const batch = yield* withDefault(section, "batch", positiveInt, 16)
    const region = yield* withDefault(section, "region", nonEmptyString, "default")
    const prefix = yield* withDefault(section, "prefix", string, "tk:fed")
    return { batch, region, prefix }
  })

const decodeMeter = (
  name: string,
  section: Section,
  defaultPrefix: string | undefined,
  block: "tokenBudget" | "fleetBudget"
): Decoded<MeterPolicy> =>
  Either.gen(function*() {
    yield* onlyFields(section, [block, "prefix"], `a ${block} policy`)
    const settings = yield* subsection(section, block)
    const shared = block === "fleetBudget"
    const fields = ["budget", "windowMs", "maxKeys", ...(shared ? ["prefix"] : [])]
    yield* onlyFields(settings, fields, block)
    const budget = yield* required(settings, "budget", positiveInt)
    const windowMs = yield* required(settings, "windowMs", duration)
    const maxKeys = yield* withDefault(settings, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const blockPrefix = shared ? yield* optional(settings, "prefix", string) : undefined
    const prefix = blockPrefix ?? (yield* prefixOf(section, name, defaultPrefix))
    return { kind: "meter", name, prefix, budget, windowMs, maxKeys, shared }
  })

const CONCURRENCY_KNOBS = [
  "minLimit",
  "maxLimit",
  "initialLimit",
  "algorithm",
  "rttWindow",
  "smoothing",
  "tolerance",
  "backoffRatio"
]

const DISTRIBUTED_KNOBS = ["aggregate", "prefix", "heartbeatMs", "onCoordinatorOutage"]

const decodeAdmitter = (
  name: string,
  section: Section,
  defaultPrefix: string | undefined,
  block: "concurrency" | "distributedConcurrency"
): Decoded<AdmitterPolicy> =>
  Either.gen(function*() {
    const kind = has(section, "strategy") ? yield* strategyKind(section) : undefined
    const rateFields = kind === undefined ? [] : ["strategy", ...STRATEGY_FIELDS[kind]]
    const owner = `a ${block} policy${kind === undefined ? "" : ` with a ${kind} rate`}`
    yield* onlyFields(section, [block, ...rateFields, "prefix", "maxKeys"], owner)
    const rate = kind === undefined ? undefined : yield* decodeStrategy(section, kind)
    const concurrency = yield* decodeConcurrency(yield* subsection(section, block), block === "distributedConcurrency")
    const prefix = yield* prefixOf(section, name, defaultPrefix)
    const maxKeys = yield* withDefault(section, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const policy: AdmitterPolicy = { kind: "admitter", name, prefix, concurrency, maxKeys }
    return rate === undefined ? policy : { ...policy, rate }
  })

const decodeConcurrency = (section: Section, distributed: boolean): Decoded<Concurrency> =>
  Either.gen(function*() {
    const block = distributed ? "distributedConcurrency" : "concurrency"
    yield* onlyFields(section, distributed ? [...CONCURRENCY_KNOBS, ...DISTRIBUTED_KNOBS] : CONCURRENCY_KNOBS, block)
    const algorithm = yield* withDefault(section, "algorithm", oneOf(["gradient2", "aimd", "fixed"]), "gradient2")
    const givenMin = yield* optional(section, "minLimit", positiveInt)
    const givenMax = yield* optional(section, "maxLimit", positiveInt)
    const givenInitial = yield* optional(section, "initialLimit", positiveInt)
    let minLimit: number
    let maxLimit: number
    let initialLimit: number
    if (algorithm === "fixed") {
      // A pinned ceiling: whichever of the three limits are given must agree, and set all three.
      const given = [givenMin, givenMax, givenInitial].filter((n): n is number => n !== undefined)
      const ceiling = given[0]
      if (ceiling === undefined) {
        return yield* fail(at(section, "maxLimit"), "required with algorithm fixed (the pinned ceiling)")
      }
      if (given.some((n) => n !== ceiling)) {
        return yield* fail(
          section.path,
          `algorithm fixed pins one ceiling, but minLimit, maxLimit and initialLimit differ (${given.join(", ")})`
        )
      }
      minLimit = maxLimit = initialLimit = ceiling
    } else {
      minLimit = givenMin ?? 4
      maxLimit = givenMax ?? 512
      if (minLimit > maxLimit) {
        const note = (given: number | undefined) => given === undefined ? ", the default" : ""
        return yield* fail(
          section.path,
          `minLimit (${minLimit}${note(givenMin)}) must not exceed maxLimit (${maxLimit}${note(givenMax)})`
        )
      }
      initialLimit = givenInitial ?? minLimit
      if (initialLimit < minLimit || initialLimit > maxLimit) {
        return yield* fail(
          at(section, "initialLimit"),
          `must be between minLimit (${minLimit}) and maxLimit (${maxLimit}), got ${initialLimit}`
        )
      }
    }
    const rttWindow = yield* withDefault(section, "rttWindow", positiveInt, 100)
    const smoothing = yield* withDefault(section, "smoothing", numberWhere("in (0, 1]", (n) => n > 0 && n <= 1), 0.2)
    const tolerance = yield* withDefault(section, "tolerance", numberWhere("≥ 1", (n) => n >= 1), 2)
    const backoffRatio = yield* withDefault(
      section,
      "backoffRatio",
      numberWhere("in [0.5, 1)", (n) => n >= 0.5 && n < 1),
      0.9
    )
    if (distributed) {
      // Accepted and checked for compatibility with the reference; the model has no fleet-wide ceiling yet.
      yield* optional(section, "aggregate", oneOf(["median", "min"]))
      yield* optional(section, "prefix", string)
      yield* optional(section, "heartbeatMs", duration)
      yield* optional(section, "onCoordinatorOutage", oneOf(["fail-closed", "local-only"]))
    }
    return {
      algorithm: minLimit === maxLimit ? "fixed" : algorithm,
      minLimit,
      maxLimit,
      initialLimit,
      backoffRatio,
      smoothing,
      tolerance,
      rttWindow
    }
  })

// ---------------------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------------------

const TOP_LEVEL_FIELDS = ["version", "defaults", "limiters", "capture", "replay"]

/** The keys of a map in file order: the order the parser saw, then any it did not report. */
const orderedKeys = (map: RawMap, fileOrder: ReadonlyArray<string> | undefined): ReadonlyArray<string> => {
  const keys = new Set<string>()
  for (const key of fileOrder ?? []) if (Object.hasOwn(map, key)) keys.add(key)
  for (const key of Object.keys(map)) keys.add(key)
  return [...keys]
}

const decodeConfig = (value: unknown, locator: Locator | undefined): Decoded<ReadonlyArray<Policy>> =>
  Either.gen(function*() {
    if (value === null || value === undefined) {
      return yield* fail([], "the file is empty; expected a map with a `limiters` map")
    }
    if (!isRawMap(value)) return yield* fail([], `expected a map at the top level, got ${describe(value)}`)
    const top: Section = { path: [], map: value }
    yield* onlyFields(top, TOP_LEVEL_FIELDS, "the top level")
    yield* optional(
      top,
      "version",
      (v) => v === 1 ? Either.right(v) : Either.left(`unsupported version ${describe(v)}; this loader reads version 1`)
    )
    let defaultPrefix: string | undefined
    if (has(top, "defaults")) {
      const defaults = yield* subsection(top, "defaults")
      yield* onlyFields(defaults, ["prefix"], "defaults")
      defaultPrefix = yield* optional(defaults, "prefix", string)
    }
    if (!has(top, "limiters")) return yield* fail(["limiters"], "required: a map from policy name to policy settings")
    const limiters = top.map.limiters
    if (!isRawMap(limiters)) {
      return yield* fail(["limiters"], `expected a map from policy name to policy settings, got ${describe(limiters)}`)
    }
    const policies: Array<Policy> = []
    for (const name of orderedKeys(limiters, locator?.keysOf(["limiters"]))) {
      if (name === "") return yield* fail(["limiters", name], "policy names must not be empty")
      policies.push(yield* decodePolicy(name, limiters[name], defaultPrefix))
    }
    return policies
  })

// ---------------------------------------------------------------------------------------------------------
// Text → raw value, with a locator that maps paths back to lines
// ---------------------------------------------------------------------------------------------------------

/** Where things are in the source text. */
interface Locator {
  /** The keys of the map at `path`, in file order. */
  readonly keysOf: (path: Path) => ReadonlyArray<string> | undefined
  /** The line of the deepest key along `path` that exists in the file. */
  readonly lineOf: (path: Path) => number | undefined
}

interface Parsed {
  readonly value: unknown
  readonly locator: Locator
}

const oneLine = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat
}

const errorMessage = (error: unknown): string => error instanceof Error ? error.message : String(error)

const parseYaml = (text: string): Decoded<Parsed> => {
  const lines = new LineCounter()
  return Either.flatMap(
    Either.try({
      try: () =>
        parseDocument(text, {
          lineCounter: lines,
          prettyErrors: false,
          uniqueKeys: true,
          stringKeys: true,
          logLevel: "silent"
        }),
      catch: (error): Problem => ({ path: [], reason: `invalid YAML: ${oneLine(errorMessage(error))}` })
    }),
    (doc) => {
      const first = doc.errors[0]
      if (first !== undefined) {
        const line = lines.linePos(first.pos[0]).line
        return Either.left({ path: [], reason: `line ${line}: ${oneLine(first.message)}`, line })
      }
      return Either.map(
        Either.try({
          try: (): unknown => doc.toJS({ maxAliasCount: 100 }),
          catch: (error): Problem => ({ path: [], reason: `invalid YAML: ${oneLine(errorMessage(error))}` })
        }),
        (value) => ({ value, locator: yamlLocator(doc, lines) })
      )
    }
  )
}

const yamlLocator = (doc: Document.Parsed, lines: LineCounter): Locator => {
  /** Follows `path` through the document's maps; stops at the first segment it cannot find. */
  const walk = (path: Path): { readonly node: unknown; readonly depth: number; readonly line: number | undefined } => {
    let node: unknown = doc.contents
    let line: number | undefined
    let depth = 0
    for (const segment of path) {
      const container = isAlias(node) ? node.resolve(doc) : node
      if (!isMap(container)) break
      const pair = container.items.find((item) => isScalar(item.key) && item.key.value === segment)
      if (pair === undefined) break
      const range = isScalar(pair.key) ? pair.key.range : undefined
      if (range) line = lines.linePos(range[0]).line
      node = pair.value
      depth++
    }
    return { node, depth, line }
  }
  return {
    keysOf: (path) => {
      const found = walk(path)
      const node = isAlias(found.node) ? found.node.resolve(doc) : found.node
      if (found.depth !== path.length || !isMap(node)) return undefined
      return node.items.flatMap((item) =>
        isScalar(item.key) && typeof item.key.value === "string" ? [item.key.value] : []
      )
    },
    lineOf: (path) => walk(path).line
  }
}

/** A key seen in JSON text: the path of the object holding it, and its line. */
interface JsonKey {
  readonly path: Path
  readonly key: string
  readonly line: number
}

/** Keys are recorded (for order and lines) only this deep; deeper objects are still checked for duplicates. */
const TRACKED_JSON_DEPTH = 6

interface JsonFrame {
  readonly path: Path | undefined
  readonly isObject: boolean
  readonly seen: Set<string>
  expectingKey: boolean
  key: string
  index: number
}

/**
 * Scans JSON text that `JSON.parse` accepted, for the things `JSON.parse` hides: key order, the line of each
 * key, and duplicate keys (which it silently collapses to the last).
 */
const scanJsonKeys = (text: string): { readonly keys: ReadonlyArray<JsonKey>; readonly duplicate?: JsonKey } => {
  const keys: Array<JsonKey> = []
  const stack: Array<JsonFrame> = []
  let line = 1
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    const top = stack[stack.length - 1]
    if (char === "\n") {
      line++
    } else if (char === "\"") {
      let end = i + 1
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      if (top !== undefined && top.isObject && top.expectingKey) {
        const key = String(JSON.parse(text.slice(i, end + 1)))
        const entry: JsonKey = { path: top.path ?? [], key, line }
        if (top.seen.has(key)) return { keys, duplicate: entry }
        top.seen.add(key)
        if (top.path !== undefined) keys.push(entry)
        top.key = key
        top.expectingKey = false
      }
      i = end
    } else if (char === "{" || char === "[") {
      const segment = top === undefined ? undefined : top.isObject ? top.key : String(top.index)
      const path = top === undefined
        ? []
        : top.path === undefined || top.path.length >= TRACKED_JSON_DEPTH || segment === undefined
        ? undefined
        : [...top.path, segment]
      stack.push({ path, isObject: char === "{", seen: new Set(), expectingKey: true, key: "", index: 0 })
    } else if (char === "}" || char === "]") {
      stack.pop()
    } else if (char === "," && top !== undefined) {
      if (top.isObject) top.expectingKey = true
      else top.index++
    }
  }
  return { keys }
}

const samePath = (a: Path, b: Path): boolean => a.length === b.length && a.every((segment, i) => segment === b[i])

const jsonLocator = (keys: ReadonlyArray<JsonKey>): Locator => ({
  keysOf: (path) => keys.filter((entry) => samePath(entry.path, path)).map((entry) => entry.key),
  lineOf: (path) => {
    for (let depth = path.length; depth > 0; depth--) {
      const parent = path.slice(0, depth - 1)
      const hit = keys.find((entry) => entry.key === path[depth - 1] && samePath(entry.path, parent))
      if (hit !== undefined) return hit.line
    }
    return undefined
  }
})

const lineAt = (text: string, offset: number): number => {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++
  return line
}

const parseJson = (text: string): Decoded<Parsed> =>
  Either.flatMap(
    Either.try({
      try: (): unknown => JSON.parse(text),
      catch: (error): Problem => {
        const message = errorMessage(error)
        const position = /at position (\d+)/.exec(message)
        if (position === null) return { path: [], reason: `invalid JSON: ${oneLine(message)}` }
        const line = lineAt(text, Number(position[1]))
        return {
          path: [],
          reason: `line ${line}: ${oneLine(message.replace(/ in JSON at position \d+.*$/s, ""))}`,
          line
        }
      }
    }),
    (value) =>
      Either.flatMap(
        Either.try({
          try: () => scanJsonKeys(text),
          catch: (error): Problem => ({ path: [], reason: `invalid JSON: ${oneLine(errorMessage(error))}` })
        }),
        ({ duplicate, keys }): Decoded<Parsed> =>
          duplicate === undefined
            ? Either.right({ value, locator: jsonLocator(keys) })
            : Either.left({
              path: [],
              reason: `line ${duplicate.line}: duplicate key ${JSON.stringify(duplicate.key)}`,
              line: duplicate.line
            })
      )
  )

const parseEither = (text: string, source: string | undefined): Either.Either<PolicySet, ConfigError> => {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text
  const trimmed = body.trim()
  const parsed = trimmed.startsWith("{") || trimmed.startsWith("[") ? parseJson(body) : parseYaml(body)
  if (Either.isLeft(parsed)) return Either.left(toConfigError(parsed.left, source, undefined))
  const { locator, value } = parsed.right
  return Either.mapLeft(
    Either.flatMap(decodeConfig(value, locator), makePolicySet),
    (problem) => toConfigError(problem, source, locator)
  )
}

// ---------------------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------------------

/**
 * Decodes config text (JSON when its trimmed start is `{` or `[`, YAML otherwise) into a `PolicySet`.
 * Pure. `source` (a file name or label) is carried into errors.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parse = (text: string, source?: string): Effect.Effect<PolicySet, ConfigError> =>
  Effect.suspend(() => parseEither(text, source))

/**
 * Decodes an already-parsed config object (the shape of the file: `{ limiters: { ... } }`) with the same
 * rules as `parse`, for programs that build their config in code or bring their own parser.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (config: unknown, source?: string): Effect.Effect<PolicySet, ConfigError> =>
  Effect.suspend(() =>
    Either.mapLeft(
      Either.flatMap(decodeConfig(config, undefined), makePolicySet),
      (problem) => toConfigError(problem, source, undefined)
    )
  )

const readFailure = (error: PlatformError): string => {
  switch (error._tag === "SystemError" ? error.reason : undefined) {
    case "NotFound":
      return "cannot read the file: not found"
    case "PermissionDenied":
      return "cannot read the file: permission denied"
    default:
      return `cannot read the file: ${oneLine(error.message)}`
  }
}

/**
 * Reads the config file at `path` through the platform `FileSystem` and decodes it like `parse`. A file
 * that cannot be read is a `ConfigError` whose `source` is `path`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const load: (path: string) => Effect.Effect<PolicySet, ConfigError, FileSystem.FileSystem> = Effect.fn(
  "Config.load"
)(function*(path: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(path).pipe(
    Effect.mapError((error) => new ConfigError({ path: "config", reason: readFailure(error), source: path }))
  )
  return yield* parse(text, path)
})
