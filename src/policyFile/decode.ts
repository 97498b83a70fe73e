/**
 * The policy file's format, decoded: a raw value (what `parse.ts` makes of YAML or JSON text, or an object
 * built in code) in the reference `throttlekit-server`'s file format → a `PolicySet` of the typed model of
 * `Policy.ts`. The value readers check one raw value each; the decoders walk the file's maps, reject
 * unknown fields, fill defaults, and stop at the first problem with the exact path of the offending field.
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
 * - `fairEscrow` and `federatedFairEscrow` check their Cost Room knobs but do not model them, and a
 *   `federatedFairEscrow` loads on any store (on memory its region pool is in-process; the reference
 *   needs Redis).
 * - A `quota` takes only the fields its `resetCadence` uses (`offsetMinutes` for the calendar cadences,
 *   `weekStartsOn` for `calendar-week`, `period`/`periodMs` and `anchor` for `fixed`, `period`/`periodMs`
 *   and `buckets` for `rolling`); the reference ignores the others. Like the reference, its period is
 *   `period` (which wins) or `periodMs`, never `windowMs`.
 * - `distributedConcurrency` takes one more knob than the reference server's: `allocation`
 *   (`equal-split`, the default, or `demand-proportional`), the ThrottleKit core coordinator's option.
 * - Duplicate keys are errors in both formats (the YAML parser reports them; for JSON `parse.ts` scans for
 *   them, since `JSON.parse` keeps the last one silently).
 * - Policy-level `maxKeys` is accepted on limiters and admitters (a meter takes it inside its block).
 * - A concurrency block may say `algorithm: fixed` (a pinned ceiling); `minLimit == maxLimit` also pins it.
 * - A leased `twoTier` block needs `lowWater` below `batch` (the reference takes any value).
 *
 * Any policy may say `shadow: true` (shadow mode: decided and recorded as usual, never denied; see
 * `Policy.LimiterPolicy.shadow`); `shadow: false`, the default, leaves the policy as if the line were absent.
 *
 * Errors: loading stops at the first problem, in file order, and fails with one `PolicyError` naming the
 * path of the offending field (`limiters.api.burst`) and the reason. A bad file never yields a partial
 * `PolicySet`.
 *
 * @since 0.2.0
 * @internal
 */
import * as Either from "effect/Either"
import {
  type AdmitterPolicy,
  type Concurrency,
  DEFAULT_MAX_KEYS,
  type DistributedConcurrency,
  type FairPolicy,
  type Federated,
  type LimiterPolicy,
  MAX_HORIZON_MS,
  MAX_QUOTA_ANCHOR_MS,
  type MeterPolicy,
  type Policy,
  type Quota,
  type QuotaCadence,
  type Strategy,
  type StrategyKind,
  type TwoTier
} from "../Policy.js"
import { federatedStrategyReason, isWindowed, makePolicySet, type PolicySet } from "../PolicySet.js"
import { type Decoded, describe, done, fail, type Locator, type Path } from "./problem.js"

// ---------------------------------------------------------------------------------------------------------
// Value readers: each checks one raw value and says why it is unusable
// ---------------------------------------------------------------------------------------------------------

type Read<A> = (value: unknown) => Either.Either<A, string>

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

/** A whole number in `[min, max]`; `what` names its unit and range for the message. */
const wholeBetween = (min: number, max: number, what: string): Read<number> => (value) =>
  typeof value === "number" && Number.isInteger(value) && value >= min && value <= max
    ? Either.right(value)
    : Either.left(`expected ${what}, got ${describe(value)}`)

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
  slidingWindowLog: ["limit", "period", "windowMs"],
  quota: ["limit", "resetCadence", "period", "periodMs", "anchor", "offsetMinutes", "weekStartsOn", "buckets"]
}

const STRATEGY_KINDS: ReadonlyArray<StrategyKind> = [
  "gcra",
  "tokenBucket",
  "fixedWindow",
  "slidingWindow",
  "slidingWindowLog",
  "quota"
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
      case "quota":
        return yield* decodeQuota(section)
    }
  })

const QUOTA_CADENCES: ReadonlyArray<QuotaCadence> = [
  "calendar-month",
  "calendar-week",
  "calendar-day",
  "fixed",
  "rolling"
]

/** The optional quota fields, and the cadences that use each. */
const QUOTA_FIELD_CADENCES: ReadonlyMap<string, ReadonlyArray<QuotaCadence>> = new Map([
  ["period", ["fixed", "rolling"]],
  ["periodMs", ["fixed", "rolling"]],
  ["anchor", ["fixed"]],
  ["offsetMinutes", ["calendar-month", "calendar-week", "calendar-day"]],
  ["weekStartsOn", ["calendar-week"]],
  ["buckets", ["rolling"]]
])

const offsetMinutes = wholeBetween(-840, 840, "a whole number of minutes from -840 to 840 (±14 h)")
const weekStartsOn = wholeBetween(0, 6, "a whole number from 0 (Sunday) to 6 (Saturday)")
const anchor = wholeBetween(
  -MAX_QUOTA_ANCHOR_MS,
  MAX_QUOTA_ANCHOR_MS,
  `an epoch-ms instant, a whole number from -${MAX_QUOTA_ANCHOR_MS} to ${MAX_QUOTA_ANCHOR_MS}`
)

/**
 * A quota: `limit` and `resetCadence`, then the fields of that cadence with the reference's defaults
 * (`anchor` 0, `offsetMinutes` 0, `weekStartsOn` 1 = Monday, `buckets` 10). A field of another cadence is
 * an error at that field (the reference ignores it).
 */
const decodeQuota = (section: Section): Decoded<Quota> =>
  Either.gen(function*() {
    const limit = yield* required(section, "limit", positiveInt)
    const resetCadence = yield* required(
      section,
      "resetCadence",
      oneOf(QUOTA_CADENCES),
      `required for a quota: one of ${QUOTA_CADENCES.join(", ")}`
    )
    for (const field of Object.keys(section.map)) {
      const users = QUOTA_FIELD_CADENCES.get(field)
      if (users !== undefined && !users.includes(resetCadence)) {
        return yield* fail(
          at(section, field),
          `does not apply to a ${resetCadence} quota (only to ${andList(users)})`
        )
      }
    }
    switch (resetCadence) {
      case "calendar-month":
      case "calendar-day":
        return {
          kind: "quota",
          resetCadence,
          limit,
          offsetMinutes: yield* withDefault(section, "offsetMinutes", offsetMinutes, 0)
        }
      case "calendar-week":
        return {
          kind: "quota",
          resetCadence,
          limit,
          offsetMinutes: yield* withDefault(section, "offsetMinutes", offsetMinutes, 0),
          weekStartsOn: yield* withDefault(section, "weekStartsOn", weekStartsOn, 1)
        }
      case "fixed":
        return {
          kind: "quota",
          resetCadence,
          limit,
          periodMs: yield* windowLength(section, ["period", "periodMs"]),
          anchor: yield* withDefault(section, "anchor", anchor, 0)
        }
      case "rolling":
        return {
          kind: "quota",
          resetCadence,
          limit,
          periodMs: yield* windowLength(section, ["period", "periodMs"]),
          buckets: yield* withDefault(section, "buckets", positiveInt, 10)
        }
    }
  })

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

/**
 * A policy's `shadow:` flag (true or false; default false), as the policy's own field: present only when
 * true, so a policy that is enforced has the same shape with or without the line.
 */
const shadowOf = (section: Section): Decoded<{ readonly shadow?: true }> =>
  Either.map(optional(section, "shadow", boolean), (shadow) => shadow === true ? { shadow } : {})

const prefixOf = (section: Section, name: string, defaultPrefix: string | undefined): Decoded<string> =>
  Either.map(optional(section, "prefix", string), (own) => own ?? defaultPrefix ?? name)

const decodePolicy = (
  name: string,
  value: unknown,
  defaultPrefix: string | undefined,
  options: DecodeOptions
): Decoded<Policy> => {
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
      return decodeLimiter(name, section, defaultPrefix, block, options)
    case "tokenBudget":
    case "fleetBudget":
      return decodeMeter(name, section, defaultPrefix, block)
    case "concurrency":
    case "distributedConcurrency":
      return decodeAdmitter(name, section, defaultPrefix, block)
    case "fairEscrow":
    case "federatedFairEscrow":
      return decodeFair(name, section, defaultPrefix, block, options)
  }
}

const decodeLimiter = (
  name: string,
  section: Section,
  defaultPrefix: string | undefined,
  block: "twoTier" | "federated" | undefined,
  options: DecodeOptions
): Decoded<LimiterPolicy> =>
  Either.gen(function*() {
    const kind = yield* strategyKind(section)
    const fields = [
      "strategy",
      ...STRATEGY_FIELDS[kind],
      "prefix",
      "maxKeys",
      "shadow",
      ...(block === undefined ? [] : [block])
    ]
    yield* onlyFields(section, fields, `a ${kind} policy${block === undefined ? "" : ` with ${block}`}`)
    if (block === "federated" && !isWindowed(kind)) {
      return yield* fail(at(section, "strategy"), federatedStrategyReason(kind))
    }
    const strategy = yield* decodeStrategy(section, kind)
    const prefix = yield* prefixOf(section, name, defaultPrefix)
    const maxKeys = yield* withDefault(section, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const policy: LimiterPolicy = { kind: "limiter", name, prefix, strategy, maxKeys, ...(yield* shadowOf(section)) }
    if (block === "twoTier") return { ...policy, twoTier: yield* decodeTwoTier(yield* subsection(section, block)) }
    if (block === "federated") {
      return { ...policy, federated: yield* decodeFederated(yield* subsection(section, block), options) }
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
    const returnIdleAfterMs = yield* optional(section, "returnIdleAfterMs", duration)
    return { mode, batch, lowWater, windowCoupled, ...(returnIdleAfterMs === undefined ? {} : { returnIdleAfterMs }) }
  })

const decodeFederated = (section: Section, options: DecodeOptions): Decoded<Federated> =>
  Either.gen(function*() {
    yield* onlyFields(section, ["batch", "region", "prefix"], "federated")
    const batch = yield* withDefault(section, "batch", positiveInt, 16)
    const fallback = options.region === undefined || options.region === "" ? "default" : options.region
    const region = yield* withDefault(section, "region", nonEmptyString, fallback)
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
    yield* onlyFields(section, [block, "prefix", "shadow"], `a ${block} policy`)
    const settings = yield* subsection(section, block)
    const shared = block === "fleetBudget"
    const fields = ["budget", "windowMs", "maxKeys", ...(shared ? ["prefix"] : [])]
    yield* onlyFields(settings, fields, block)
    const budget = yield* required(settings, "budget", positiveInt)
    const windowMs = yield* required(settings, "windowMs", duration)
    const maxKeys = yield* withDefault(settings, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const blockPrefix = shared ? yield* optional(settings, "prefix", string) : undefined
    const prefix = blockPrefix ?? (yield* prefixOf(section, name, defaultPrefix))
    return { kind: "meter", name, prefix, budget, windowMs, maxKeys, shared, ...(yield* shadowOf(section)) }
  })

const FAIR_FIELDS = [
  "limit",
  "windowMs",
  "weights",
  "maxKeys",
  "costRoom",
  "costRoomMaxKeys",
  "costRoomRingSize",
  "unit"
]

/** The tenant weights: a map of tenant to a number > 0 (an unlisted tenant weighs 1). */
const decodeWeights = (section: Section): Decoded<Readonly<Record<string, number>>> =>
  Either.gen(function*() {
    if (!has(section, "weights")) return {}
    const weights = section.map.weights
    if (!isRawMap(weights)) {
      return yield* fail(at(section, "weights"), `expected a map of tenant to weight, got ${describe(weights)}`)
    }
    const out: Record<string, number> = {}
    for (const [tenant, weight] of Object.entries(weights)) {
      const read = positiveNumber(weight)
      if (Either.isLeft(read)) return yield* fail([...at(section, "weights"), tenant], read.left)
      Object.defineProperty(out, tenant, { value: read.right, enumerable: true, writable: true, configurable: true })
    }
    return out
  })

/**
 * A fair escrow (`fairEscrow`) or one pooled across regions (`federatedFairEscrow`), with the reference's
 * fields and defaults: `limit` and `windowMs` required, `weights` (default: everyone weighs 1), `maxKeys`
 * 100 000; the Cost Room knobs (`costRoom`, `costRoomMaxKeys`, `costRoomRingSize`, `unit`) are checked and
 * not modelled (this server has no Cost Room). A federated one also takes `region` (default: the server's),
 * `key` (the pool key, default: the policy name) and `prefix` (default `tk:rfp`).
 */
const decodeFair = (
  name: string,
  section: Section,
  defaultPrefix: string | undefined,
  block: "fairEscrow" | "federatedFairEscrow",
  options: DecodeOptions
): Decoded<FairPolicy> =>
  Either.gen(function*() {
    yield* onlyFields(section, [block, "prefix", "shadow"], `a ${block} policy`)
    const settings = yield* subsection(section, block)
    const federated = block === "federatedFairEscrow"
    yield* onlyFields(settings, federated ? [...FAIR_FIELDS, "region", "key", "prefix"] : FAIR_FIELDS, block)
    const limit = yield* required(settings, "limit", positiveInt)
    const windowMs = yield* required(settings, "windowMs", duration)
    if (windowMs > MAX_HORIZON_MS) {
      return yield* fail(at(settings, "windowMs"), `must be at most ${MAX_HORIZON_MS} ms (100 years), got ${windowMs}`)
    }
    const weights = yield* decodeWeights(settings)
    const maxKeys = yield* withDefault(settings, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    // The Cost Room (the reference's monitoring view) is not modelled; its knobs are checked all the same.
    yield* optional(settings, "costRoom", boolean)
    yield* optional(settings, "costRoomMaxKeys", positiveInt)
    yield* optional(settings, "costRoomRingSize", positiveInt)
    yield* optional(settings, "unit", string)
    const prefix = yield* prefixOf(section, name, defaultPrefix)
    const policy: FairPolicy = {
      kind: "fair",
      name,
      prefix,
      fairEscrow: { limit, windowMs, weights },
      maxKeys,
      ...(yield* shadowOf(section))
    }
    if (!federated) return policy
    const fallback = options.region === undefined || options.region === "" ? "default" : options.region
    const region = yield* withDefault(settings, "region", nonEmptyString, fallback)
    const key = yield* withDefault(settings, "key", nonEmptyString, name)
    const poolPrefix = yield* withDefault(settings, "prefix", string, "tk:rfp")
    return { ...policy, federation: { region, key, prefix: poolPrefix } }
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

const DISTRIBUTED_KNOBS = ["aggregate", "allocation", "prefix", "heartbeatMs", "onCoordinatorOutage"]

/** The fleet knobs of a `distributedConcurrency` block, with the ThrottleKit core's defaults. */
const decodeDistributed = (section: Section): Decoded<DistributedConcurrency> =>
  Either.gen(function*() {
    return {
      aggregate: yield* withDefault(section, "aggregate", oneOf(["median", "min"]), "median"),
      allocation: yield* withDefault(
        section,
        "allocation",
        oneOf(["equal-split", "demand-proportional"]),
        "equal-split"
      ),
      prefix: yield* withDefault(section, "prefix", string, "tk:fed"),
      heartbeatMs: yield* withDefault(section, "heartbeatMs", duration, 1000),
      onCoordinatorOutage: yield* withDefault(
        section,
        "onCoordinatorOutage",
        oneOf(["fail-closed", "local-only"]),
        "fail-closed"
      )
    }
  })

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
    yield* onlyFields(section, [block, ...rateFields, "prefix", "maxKeys", "shadow"], owner)
    const rate = kind === undefined ? undefined : yield* decodeStrategy(section, kind)
    const settings = yield* subsection(section, block)
    const concurrency = yield* decodeConcurrency(settings, block === "distributedConcurrency")
    const distributed = block === "distributedConcurrency" ? yield* decodeDistributed(settings) : undefined
    const prefix = yield* prefixOf(section, name, defaultPrefix)
    const maxKeys = yield* withDefault(section, "maxKeys", positiveInt, DEFAULT_MAX_KEYS)
    const policy: AdmitterPolicy = {
      kind: "admitter",
      name,
      prefix,
      concurrency,
      maxKeys,
      ...(distributed === undefined ? {} : { distributed }),
      ...(yield* shadowOf(section))
    }
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

const decodeFile = (
  value: unknown,
  locator: Locator | undefined,
  options: DecodeOptions
): Decoded<ReadonlyArray<Policy>> =>
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
      policies.push(yield* decodePolicy(name, limiters[name], defaultPrefix, options))
    }
    return policies
  })

/**
 * What the file leaves to its reader: the region of a `federated:` or `federatedFairEscrow:` block that
 * names none (default `"default"`; the server's `--region`).
 *
 * @since 0.3.0
 * @internal
 */
export interface DecodeOptions {
  readonly region?: string | undefined
}

/**
 * Decodes a raw value in the file format into a validated `PolicySet`, or answers the first problem by its
 * path. `locator` (when the value came from text) gives the file order of the policies.
 *
 * @since 0.2.0
 * @internal
 */
export const decodePolicies = (
  value: unknown,
  locator: Locator | undefined,
  options: DecodeOptions = {}
): Decoded<PolicySet> => Either.flatMap(decodeFile(value, locator, options), makePolicySet)
