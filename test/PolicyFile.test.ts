import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import * as fc from "fast-check"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { stringify as toYaml } from "yaml"
import { DEFAULT_MAX_KEYS, type LimiterPolicy, Policy, storeKey } from "../src/Policy.js"
import * as PolicyFile from "../src/PolicyFile.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const examplePath = path.resolve(here, "../examples/policies.yaml")

/** The same config written as YAML (by the `yaml` package) and as JSON. */
const bothFormats = (config: unknown): ReadonlyArray<readonly [string, string]> => [
  ["yaml", toYaml(config)],
  ["json", JSON.stringify(config, null, 2)]
]

/** Decodes a one-policy config (`limiters: { p: body }`) in both formats; both must agree. */
const onePolicy = (body: unknown, extra: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const results: Array<Policy> = []
    for (const [, text] of bothFormats({ ...extra, limiters: { p: body } })) {
      const set = yield* PolicyFile.parse(text)
      expect(set.names).toEqual(["p"])
      results.push(Option.getOrThrow(set.get("p")))
    }
    expect(results[0]).toEqual(results[1])
    return results[0]!
  })

/** The failure of a config in both formats (path and reason must agree); returns the YAML one. */
const failureOf = (config: unknown) =>
  Effect.gen(function*() {
    const errors: Array<PolicyFile.PolicyError> = []
    for (const [, text] of bothFormats(config)) errors.push(yield* Effect.flip(PolicyFile.parse(text)))
    const [yaml, json] = errors
    expect({ path: json!.path, reason: json!.reason }).toEqual({ path: yaml!.path, reason: yaml!.reason })
    return yaml!
  })

const expectProblem = (error: PolicyFile.PolicyError, problemPath: string, reason: string) =>
  expect({ path: error.path, reason: error.reason }).toEqual({ path: problemPath, reason })

const concurrencyDefaults = {
  algorithm: "gradient2",
  minLimit: 4,
  maxLimit: 512,
  initialLimit: 4,
  backoffRatio: 0.9,
  smoothing: 0.2,
  tolerance: 2,
  rttWindow: 100
} as const

describe("PolicyFile.parse: strategies (YAML and JSON)", () => {
  const cases: ReadonlyArray<readonly [string, Record<string, unknown>, unknown]> = [
    ["gcra with burst", { strategy: "gcra", limit: 5, period: "1s", burst: 7 }, {
      kind: "gcra",
      limit: 5,
      periodMs: 1000,
      burst: 7
    }],
    ["gcra burst defaults to limit", { strategy: "gcra", limit: 5, periodMs: 2000 }, {
      kind: "gcra",
      limit: 5,
      periodMs: 2000,
      burst: 5
    }],
    ["gcra windowMs", { strategy: "gcra", limit: 3, windowMs: 500 }, {
      kind: "gcra",
      limit: 3,
      periodMs: 500,
      burst: 3
    }],
    ["gcra period wins over periodMs and windowMs", {
      strategy: "gcra",
      limit: 3,
      period: "1m",
      periodMs: 5,
      windowMs: 7
    }, { kind: "gcra", limit: 3, periodMs: 60_000, burst: 3 }],
    ["gcra periodMs wins over windowMs", { strategy: "gcra", limit: 3, periodMs: 5, windowMs: 7 }, {
      kind: "gcra",
      limit: 3,
      periodMs: 5,
      burst: 3
    }],
    ["tokenBucket", { strategy: "tokenBucket", capacity: 20, refillPerSec: 0.5 }, {
      kind: "tokenBucket",
      capacity: 20,
      refillPerSec: 0.5
    }],
    ["fixedWindow period", { strategy: "fixedWindow", limit: 10, period: "1h" }, {
      kind: "fixedWindow",
      limit: 10,
      windowMs: 3_600_000
    }],
    ["fixedWindow windowMs", { strategy: "fixedWindow", limit: 10, windowMs: 1000 }, {
      kind: "fixedWindow",
      limit: 10,
      windowMs: 1000
    }],
    ["slidingWindow default buckets", { strategy: "slidingWindow", limit: 100, period: "1m" }, {
      kind: "slidingWindow",
      limit: 100,
      windowMs: 60_000,
      buckets: 10
    }],
    ["slidingWindow buckets", { strategy: "slidingWindow", limit: 100, windowMs: 60_000, buckets: 4 }, {
      kind: "slidingWindow",
      limit: 100,
      windowMs: 60_000,
      buckets: 4
    }],
    ["slidingWindowLog", { strategy: "slidingWindowLog", limit: 3, period: "30s" }, {
      kind: "slidingWindowLog",
      limit: 3,
      windowMs: 30_000
    }],
    ["quota calendar-month, offset defaults to 0 (UTC)", {
      strategy: "quota",
      limit: 1_000_000,
      resetCadence: "calendar-month"
    }, { kind: "quota", resetCadence: "calendar-month", limit: 1_000_000, offsetMinutes: 0 }],
    ["quota calendar-day at UTC+5:30", {
      strategy: "quota",
      limit: 50,
      resetCadence: "calendar-day",
      offsetMinutes: 330
    }, {
      kind: "quota",
      resetCadence: "calendar-day",
      limit: 50,
      offsetMinutes: 330
    }],
    ["quota calendar-week: weeks start on Monday by default", {
      strategy: "quota",
      limit: 7,
      resetCadence: "calendar-week",
      offsetMinutes: -840
    }, { kind: "quota", resetCadence: "calendar-week", limit: 7, offsetMinutes: -840, weekStartsOn: 1 }],
    ["quota calendar-week from Sunday at UTC+14", {
      strategy: "quota",
      limit: 7,
      resetCadence: "calendar-week",
      weekStartsOn: 0,
      offsetMinutes: 840
    }, { kind: "quota", resetCadence: "calendar-week", limit: 7, offsetMinutes: 840, weekStartsOn: 0 }],
    ["quota fixed: period wins over periodMs; anchor defaults to 0", {
      strategy: "quota",
      limit: 5,
      resetCadence: "fixed",
      period: "30d",
      periodMs: 5
    }, { kind: "quota", resetCadence: "fixed", limit: 5, periodMs: 2_592_000_000, anchor: 0 }],
    ["quota fixed with periodMs and an anchor", {
      strategy: "quota",
      limit: 5,
      resetCadence: "fixed",
      periodMs: 86_400_000,
      anchor: -3_600_000
    }, { kind: "quota", resetCadence: "fixed", limit: 5, periodMs: 86_400_000, anchor: -3_600_000 }],
    ["quota rolling: buckets default to 10", { strategy: "quota", limit: 9, resetCadence: "rolling", period: "1h" }, {
      kind: "quota",
      resetCadence: "rolling",
      limit: 9,
      periodMs: 3_600_000,
      buckets: 10
    }],
    ["quota rolling with buckets", {
      strategy: "quota",
      limit: 9,
      resetCadence: "rolling",
      periodMs: 60_000,
      buckets: 6
    }, { kind: "quota", resetCadence: "rolling", limit: 9, periodMs: 60_000, buckets: 6 }]
  ]
  for (const [title, body, strategy] of cases) {
    it.effect(title, () =>
      Effect.gen(function*() {
        const policy = yield* onePolicy(body)
        expect(policy).toEqual({ kind: "limiter", name: "p", prefix: "p", strategy, maxKeys: DEFAULT_MAX_KEYS })
      }))
  }
})

describe("PolicyFile.parse: kinds", () => {
  const gcra = { strategy: "gcra", limit: 10, period: "1s" }
  const gcraStrategy = { kind: "gcra", limit: 10, periodMs: 1000, burst: 10 }

  it.effect("twoTier leased", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ ...gcra, twoTier: { batch: 20, lowWater: 5, windowCoupled: true } })
      expect(policy).toEqual({
        kind: "limiter",
        name: "p",
        prefix: "p",
        strategy: gcraStrategy,
        maxKeys: DEFAULT_MAX_KEYS,
        twoTier: { mode: "leased", batch: 20, lowWater: 5, windowCoupled: true }
      })
    }))

  it.effect("twoTier strict defaults (batch 16, lowWater 0, not window-coupled); returnIdleAfterMs read", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ ...gcra, twoTier: { mode: "strict", returnIdleAfterMs: "30s" } })
      expect(policy.kind === "limiter" && policy.twoTier).toEqual({
        mode: "strict",
        batch: 16,
        lowWater: 0,
        windowCoupled: false,
        returnIdleAfterMs: 30_000
      })
    }))

  it.effect("federated defaults on fixedWindow; explicit settings on slidingWindow", () =>
    Effect.gen(function*() {
      const fixed = yield* onePolicy({ strategy: "fixedWindow", limit: 100, period: "1m", federated: {} })
      expect(fixed).toEqual({
        kind: "limiter",
        name: "p",
        prefix: "p",
        strategy: { kind: "fixedWindow", limit: 100, windowMs: 60_000 },
        maxKeys: DEFAULT_MAX_KEYS,
        federated: { batch: 16, region: "default", prefix: "tk:fed" }
      })
      const sliding = yield* onePolicy({
        strategy: "slidingWindow",
        limit: 100,
        period: "1m",
        federated: { batch: 4, region: "eu-west", prefix: "fleet" }
      })
      expect((sliding as LimiterPolicy).federated).toEqual({ batch: 4, region: "eu-west", prefix: "fleet" })
    }))

  it.effect("tokenBudget is a private meter", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ tokenBudget: { budget: 2000, windowMs: "1m" } })
      expect(policy).toEqual({
        kind: "meter",
        name: "p",
        prefix: "p",
        budget: 2000,
        windowMs: 60_000,
        maxKeys: DEFAULT_MAX_KEYS,
        shared: false
      })
    }))

  it.effect("fleetBudget is a shared meter; its block prefix wins", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy(
        { fleetBudget: { budget: 50, windowMs: 1000, maxKeys: 9, prefix: "fleet-llm" } },
        { defaults: { prefix: "app" } }
      )
      expect(policy).toEqual({
        kind: "meter",
        name: "p",
        prefix: "fleet-llm",
        budget: 50,
        windowMs: 1000,
        maxKeys: 9,
        shared: true
      })
      const inherited = yield* onePolicy({ fleetBudget: { budget: 50, windowMs: 1000 } }, {
        defaults: { prefix: "app" }
      })
      expect(inherited.prefix).toBe("app")
    }))

  it.effect("concurrency with all defaults", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ concurrency: {} })
      expect(policy).toEqual({
        kind: "admitter",
        name: "p",
        prefix: "p",
        concurrency: concurrencyDefaults,
        maxKeys: DEFAULT_MAX_KEYS
      })
    }))

  it.effect("concurrency aimd with every knob", () =>
    Effect.gen(function*() {
      const knobs = {
        algorithm: "aimd",
        minLimit: 2,
        maxLimit: 40,
        initialLimit: 10,
        rttWindow: 50,
        smoothing: 0.5,
        tolerance: 1.5,
        backoffRatio: 0.75
      }
      const policy = yield* onePolicy({ concurrency: knobs })
      expect(policy.kind === "admitter" && policy.concurrency).toEqual(knobs)
    }))

  it.effect("minLimit == maxLimit pins a fixed ceiling whatever the algorithm", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ concurrency: { algorithm: "gradient2", minLimit: 3, maxLimit: 3 } })
      expect(policy.kind === "admitter" && policy.concurrency).toEqual({
        ...concurrencyDefaults,
        algorithm: "fixed",
        minLimit: 3,
        maxLimit: 3,
        initialLimit: 3
      })
    }))

  it.effect("algorithm fixed with one limit pins all three to it", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ concurrency: { algorithm: "fixed", maxLimit: 7 } })
      expect(policy.kind === "admitter" && policy.concurrency).toMatchObject({
        algorithm: "fixed",
        minLimit: 7,
        maxLimit: 7,
        initialLimit: 7
      })
    }))

  it.effect("concurrency with a strategy is a unified admitter (rate axis)", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({ ...gcra, prefix: "jobs", concurrency: { maxLimit: 8 } })
      expect(policy).toEqual({
        kind: "admitter",
        name: "p",
        prefix: "jobs",
        concurrency: { ...concurrencyDefaults, maxLimit: 8 },
        rate: gcraStrategy,
        maxKeys: DEFAULT_MAX_KEYS
      })
    }))

  it.effect("distributedConcurrency: a concurrency admitter with its fleet knobs", () =>
    Effect.gen(function*() {
      const policy = yield* onePolicy({
        distributedConcurrency: {
          minLimit: 2,
          maxLimit: 20,
          aggregate: "min",
          allocation: "demand-proportional",
          prefix: "tk:dc",
          heartbeatMs: "1.5s",
          onCoordinatorOutage: "local-only"
        }
      })
      expect(policy).toEqual({
        kind: "admitter",
        name: "p",
        prefix: "p",
        concurrency: { ...concurrencyDefaults, minLimit: 2, maxLimit: 20, initialLimit: 2 },
        maxKeys: DEFAULT_MAX_KEYS,
        distributed: {
          aggregate: "min",
          allocation: "demand-proportional",
          prefix: "tk:dc",
          heartbeatMs: 1500,
          onCoordinatorOutage: "local-only"
        }
      })
    }))

  it.effect("the ThrottleKit core's distributedConcurrency example loads unchanged, with the core's defaults", () =>
    Effect.gen(function*() {
      // As the core's server README writes it.
      const text = [
        "version: 1",
        "limiters:",
        "  checkout:",
        "    distributedConcurrency:",
        "      minLimit: 4",
        "      maxLimit: 200        # ← ONE in-flight ceiling of 200 across the whole fleet, not 200 per instance",
        "      aggregate: median    # how the fleet folds nodes' limits (median | min); default median",
        ""
      ].join("\n")
      const set = yield* PolicyFile.parse(text)
      expect(set.policies).toEqual([{
        kind: "admitter",
        name: "checkout",
        prefix: "checkout",
        concurrency: { ...concurrencyDefaults, minLimit: 4, maxLimit: 200, initialLimit: 4 },
        maxKeys: DEFAULT_MAX_KEYS,
        distributed: {
          aggregate: "median",
          allocation: "equal-split",
          prefix: "tk:fed",
          heartbeatMs: 1000,
          onCoordinatorOutage: "fail-closed"
        }
      }])
      const bad = yield* Effect.flip(onePolicy({ distributedConcurrency: { allocation: "by-need" } }))
      expect(bad.path).toBe("limiters.p.distributedConcurrency.allocation")
    }))
})

describe("PolicyFile.parse: durations", () => {
  const good: ReadonlyArray<readonly [unknown, number]> = [
    ["30s", 30_000],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1.5s", 1500],
    ["250ms", 250],
    ["2d", 172_800_000],
    ["100", 100],
    [" 5 s ", 5000],
    ["1.1s", 1100],
    ["0.25m", 15_000],
    [1500, 1500]
  ]
  for (const [written, ms] of good) {
    it.effect(`${JSON.stringify(written)} is ${ms} ms`, () =>
      Effect.gen(function*() {
        const policy = yield* onePolicy({ strategy: "fixedWindow", limit: 1, period: written })
        expect(policy.kind === "limiter" && policy.strategy).toEqual({ kind: "fixedWindow", limit: 1, windowMs: ms })
      }))
  }

  const hint = "a duration such as 250ms, 30s, 1.5s, 1m, 1h or 2d, or a number of milliseconds"
  const bad: ReadonlyArray<readonly [unknown, string]> = [
    ["0.5ms", "expected a whole number of milliseconds, got \"0.5ms\""],
    ["1.0005s", "expected a whole number of milliseconds, got \"1.0005s\""],
    [1.5, "expected a whole number of milliseconds, got 1.5"],
    ["0s", "expected a positive duration, got \"0s\""],
    [0, "expected a positive duration, got 0"],
    [-5, "expected a positive duration, got -5"],
    ["-5s", `expected ${hint}, got "-5s"`],
    ["1w", `expected ${hint}, got "1w"`],
    ["soon", `expected ${hint}, got "soon"`],
    [true, `expected ${hint}, got true`],
    ["99999999999999999d", "expected a duration of at most 9007199254740991 ms, got \"99999999999999999d\""]
  ]
  for (const [written, reason] of bad) {
    it.effect(`${JSON.stringify(written)} is rejected`, () =>
      Effect.gen(function*() {
        const error = yield* failureOf({ limiters: { api: { strategy: "gcra", limit: 1, period: written } } })
        expectProblem(error, "limiters.api.period", reason)
      }))
  }
})

describe("PolicyFile.parse: defaults, prefixes, order", () => {
  it.effect("prefix: the policy's own, else defaults.prefix, else the name; empty keeps the key as-is", () =>
    Effect.gen(function*() {
      const body = { strategy: "gcra", limit: 1, period: "1s" }
      const text = toYaml({
        version: 1,
        defaults: { prefix: "app" },
        limiters: { a: body, b: { ...body, prefix: "own" }, c: { ...body, prefix: "" } }
      })
      const set = yield* PolicyFile.parse(text)
      expect(set.policies.map((p) => [p.name, p.prefix])).toEqual([["a", "app"], ["b", "own"], ["c", ""]])
      expect(storeKey(Option.getOrThrow(set.get("c")).prefix, "k")).toBe("k")
      const bare = yield* PolicyFile.parse(toYaml({ limiters: { a: body } }))
      expect(bare.policies[0]!.prefix).toBe("a")
    }))

  it.effect("maxKeys defaults to DEFAULT_MAX_KEYS and can be set per policy", () =>
    Effect.gen(function*() {
      const plain = yield* onePolicy({ strategy: "gcra", limit: 1, period: "1s" })
      expect(plain.maxKeys).toBe(DEFAULT_MAX_KEYS)
      const capped = yield* onePolicy({ strategy: "gcra", limit: 1, period: "1s", maxKeys: 10 })
      expect(capped.maxKeys).toBe(10)
    }))

  it.effect("capture and replay blocks are accepted and ignored", () =>
    Effect.gen(function*() {
      const set = yield* PolicyFile.parse(toYaml({
        capture: { enabled: true, sink: { kind: "file" } },
        replay: [1, 2],
        limiters: { a: { strategy: "gcra", limit: 1, period: "1s" } }
      }))
      expect(set.names).toEqual(["a"])
    }))

  it.effect("an empty limiters map is an empty set", () =>
    Effect.gen(function*() {
      const set = yield* PolicyFile.parse("limiters: {}\n")
      expect(set.size).toBe(0)
      expect(set.names).toEqual([])
    }))

  it.effect("policies keep file order, numeric-looking names included (YAML and JSON)", () =>
    Effect.gen(function*() {
      const body = "{ \"strategy\": \"gcra\", \"limit\": 1, \"period\": \"1s\" }"
      const yaml = `limiters:\n  zeta: ${body}\n  "2": ${body}\n  alpha: ${body}\n  1: ${body}\n`
      const json = `{ "limiters": { "zeta": ${body}, "2": ${body}, "alpha": ${body}, "1": ${body} } }`
      for (const text of [yaml, json]) {
        const set = yield* PolicyFile.parse(text)
        expect(set.names).toEqual(["zeta", "2", "alpha", "1"])
        expect(set.policies.map((p) => p.name)).toEqual(["zeta", "2", "alpha", "1"])
        expect([...set].map((p) => p.name)).toEqual(["zeta", "2", "alpha", "1"])
      }
    }))

  it.effect("YAML 1.2 features the reference subset lacks: anchors, nested flow maps, a leading BOM", () =>
    Effect.gen(function*() {
      const withBom = yield* PolicyFile.parse("\uFEFFlimiters:\n  a: { strategy: gcra, limit: 2, period: 1s }\n")
      expect(withBom.names).toEqual(["a"])
      const jsonWithBom = yield* PolicyFile.parse("\uFEFF{ \"limiters\": {} }")
      expect(jsonWithBom.size).toBe(0)
      const anchored = yield* PolicyFile.parse(
        "limiters:\n  a: &rate { strategy: gcra, limit: 2, period: 1s }\n  b: *rate\n  c: { strategy: gcra, limit: 2, period: 1s, twoTier: { batch: 4 } }\n"
      )
      expect(anchored.names).toEqual(["a", "b", "c"])
      expect(Option.getOrThrow(anchored.get("b"))).toMatchObject({ name: "b", prefix: "b" })
      expect(Option.getOrThrow(anchored.get("c"))).toMatchObject({ twoTier: { batch: 4 } })
    }))
})

describe("PolicyFile.load", () => {
  it.effect("loads examples/policies.yaml from disk, with no platform layer provided", () =>
    Effect.gen(function*() {
      const set = yield* PolicyFile.load(examplePath)
      expect(set.names).toEqual([
        "api",
        "search",
        "uploads",
        "feed",
        "audit",
        "monthly",
        "llm",
        "workers",
        "pool",
        "jobs"
      ])
      expect(Option.getOrThrow(set.get("api"))).toEqual({
        kind: "limiter",
        name: "api",
        prefix: "api",
        strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 },
        maxKeys: DEFAULT_MAX_KEYS
      })
      expect(set.policies.map((p) => p.kind === "limiter" ? p.strategy.kind : p.kind)).toEqual([
        "gcra",
        "tokenBucket",
        "fixedWindow",
        "slidingWindow",
        "slidingWindowLog",
        "quota",
        "meter",
        "admitter",
        "admitter",
        "admitter"
      ])
      expect(Option.getOrThrow(set.get("monthly"))).toMatchObject({
        strategy: { kind: "quota", resetCadence: "calendar-month", limit: 1000, offsetMinutes: 330 }
      })
      expect(Option.getOrThrow(set.get("llm"))).toMatchObject({ kind: "meter", budget: 2000, windowMs: 60_000 })
      expect(Option.getOrThrow(set.get("workers"))).toMatchObject({
        kind: "admitter",
        concurrency: { algorithm: "fixed", minLimit: 3, maxLimit: 3, initialLimit: 3 }
      })
      const jobs = Option.getOrThrow(set.get("jobs"))
      expect(jobs.kind === "admitter" && jobs.rate?.kind).toBe("gcra")
      expect(set.get("nope")).toEqual(Option.none())
    }))

  it.effect("a missing file is a PolicyError naming the path", () =>
    Effect.gen(function*() {
      const missing = path.resolve(here, "fixtures/does-not-exist.yaml")
      const error = yield* Effect.flip(PolicyFile.load(missing))
      expect(error).toBeInstanceOf(PolicyFile.PolicyError)
      expect({ path: error.path, reason: error.reason, source: error.source }).toEqual({
        path: "config",
        reason: "cannot read the file: not found",
        source: missing
      })
      expect(error.message).toBe(`config: cannot read the file: not found (${missing})`)
    }))

  it.effect("a directory is a PolicyError saying so, never a defect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PolicyFile.load(here))
      expect({ path: error.path, reason: error.reason, source: error.source }).toEqual({
        path: "config",
        reason: "cannot read the file: it is a directory",
        source: here
      })
    }))

  it.effect("a bad file's errors carry the file and the line", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        PolicyFile.parse("limiters:\n  api:\n    strategy: gcra\n    limit: 0\n", "p.yaml")
      )
      expect(error.message).toBe("limiters.api.limit: expected a positive integer, got 0 (p.yaml, line 4)")
      expect(error.line).toBe(4)
    }))
})

describe("PolicyFile.parse: errors (exact path and reason)", () => {
  const gcra = { strategy: "gcra", limit: 5, period: "1s" }

  it.effect("top level not a map, empty file, missing limiters, limiters not a map", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* Effect.flip(PolicyFile.parse("[1, 2]")),
        "config",
        "expected a map at the top level, got a list"
      )
      expectProblem(
        yield* Effect.flip(PolicyFile.parse("# nothing here\n")),
        "config",
        "the file is empty; expected a map with a `limiters` map"
      )
      expectProblem(
        yield* failureOf({ version: 1 }),
        "limiters",
        "required: a map from policy name to policy settings"
      )
      expectProblem(
        yield* failureOf({ limiters: ["a"] }),
        "limiters",
        "expected a map from policy name to policy settings, got a list"
      )
    }))

  it.effect("unknown top-level field, bad version, bad defaults", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiter: {} }),
        "limiter",
        "unknown field; the top level takes version, defaults, limiters, capture, replay"
      )
      expectProblem(
        yield* failureOf({ version: 2, limiters: {} }),
        "version",
        "unsupported version 2; this loader reads version 1"
      )
      expectProblem(
        yield* failureOf({ defaults: { prefix: 7 }, limiters: {} }),
        "defaults.prefix",
        "expected a string, got 7 (quote it to make it a string)"
      )
      expectProblem(
        yield* failureOf({ defaults: { prefx: "a" }, limiters: {} }),
        "defaults.prefx",
        "unknown field; defaults takes prefix"
      )
    }))

  it.effect("unknown strategy, missing strategy, non-string strategy", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { api: { strategy: "leakyBucket", limit: 1 } } }),
        "limiters.api.strategy",
        "unknown strategy \"leakyBucket\"; expected one of gcra, tokenBucket, fixedWindow, slidingWindow, slidingWindowLog, quota"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { limit: 1 } } }),
        "limiters.api.strategy",
        "required: one of gcra, tokenBucket, fixedWindow, slidingWindow, slidingWindowLog, quota (or a block such as tokenBudget or concurrency)"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { strategy: 3 } } }),
        "limiters.api.strategy",
        "expected a strategy name, got 3"
      )
    }))

  it.effect("negative burst, with the message the user sees", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        PolicyFile.parse("limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n    burst: -1\n")
      )
      expectProblem(error, "limiters.api.burst", "expected a positive integer, got -1")
      expect(error.message).toBe("limiters.api.burst: expected a positive integer, got -1 (line 6)")
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, burst: -1 } } }),
        "limiters.api.burst",
        "expected a positive integer, got -1"
      )
    }))

  it.effect("other bad numbers", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, limit: 2.5 } } }),
        "limiters.api.limit",
        "expected a positive integer, got 2.5"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, limit: "5" } } }),
        "limiters.api.limit",
        "expected a positive integer, got \"5\""
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { strategy: "gcra", period: "1s" } } }),
        "limiters.api.limit",
        "required"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { strategy: "gcra", limit: 1 } } }),
        "limiters.api.period",
        "required (e.g. period: 1s, or periodMs / windowMs in ms)"
      )
      expectProblem(
        yield* failureOf({ limiters: { tb: { strategy: "tokenBucket", capacity: 5, refillPerSec: 0 } } }),
        "limiters.tb.refillPerSec",
        "expected a number > 0, got 0"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, maxKeys: 0 } } }),
        "limiters.api.maxKeys",
        "expected a positive integer, got 0"
      )
    }))

  it.effect("quota: cadence, offset, week start, anchor, period, and the fields of another cadence", () =>
    Effect.gen(function*() {
      const quota = (body: Record<string, unknown>) => failureOf({ limiters: { q: { strategy: "quota", ...body } } })
      const monthly = { limit: 10, resetCadence: "calendar-month" }
      expectProblem(
        yield* quota({ limit: 10 }),
        "limiters.q.resetCadence",
        "required for a quota: one of calendar-month, calendar-week, calendar-day, fixed, rolling"
      )
      expectProblem(
        yield* quota({ limit: 10, resetCadence: "monthly" }),
        "limiters.q.resetCadence",
        "expected one of calendar-month, calendar-week, calendar-day, fixed, rolling, got \"monthly\""
      )
      expectProblem(yield* quota({ resetCadence: "calendar-day" }), "limiters.q.limit", "required")
      expectProblem(
        yield* quota({ ...monthly, offsetMinutes: 841 }),
        "limiters.q.offsetMinutes",
        "expected a whole number of minutes from -840 to 840 (±14 h), got 841"
      )
      expectProblem(
        yield* quota({ ...monthly, offsetMinutes: -900 }),
        "limiters.q.offsetMinutes",
        "expected a whole number of minutes from -840 to 840 (±14 h), got -900"
      )
      expectProblem(
        yield* quota({ ...monthly, offsetMinutes: 5.5 }),
        "limiters.q.offsetMinutes",
        "expected a whole number of minutes from -840 to 840 (±14 h), got 5.5"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "calendar-week", weekStartsOn: 7 }),
        "limiters.q.weekStartsOn",
        "expected a whole number from 0 (Sunday) to 6 (Saturday), got 7"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "calendar-week", weekStartsOn: "monday" }),
        "limiters.q.weekStartsOn",
        "expected a whole number from 0 (Sunday) to 6 (Saturday), got \"monday\""
      )
      expectProblem(
        yield* quota({ ...monthly, weekStartsOn: 0 }),
        "limiters.q.weekStartsOn",
        "does not apply to a calendar-month quota (only to calendar-week)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "calendar-day", period: "1d" }),
        "limiters.q.period",
        "does not apply to a calendar-day quota (only to fixed and rolling)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed", period: "1d", offsetMinutes: 60 }),
        "limiters.q.offsetMinutes",
        "does not apply to a fixed quota (only to calendar-month, calendar-week and calendar-day)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "rolling", period: "1d", anchor: 0 }),
        "limiters.q.anchor",
        "does not apply to a rolling quota (only to fixed)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed", period: "1d", buckets: 4 }),
        "limiters.q.buckets",
        "does not apply to a fixed quota (only to rolling)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed" }),
        "limiters.q.period",
        "required (e.g. period: 1s, or periodMs in ms)"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "rolling", periodMs: 0 }),
        "limiters.q.periodMs",
        "expected a positive duration, got 0"
      )
      // Like the reference, a quota's period is never windowMs.
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed", windowMs: 1000 }),
        "limiters.q.windowMs",
        "unknown field; a quota policy takes strategy, limit, resetCadence, period, periodMs, anchor, offsetMinutes, weekStartsOn, buckets, prefix, maxKeys, shadow"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed", period: "1d", anchor: 1.5 }),
        "limiters.q.anchor",
        "expected an epoch-ms instant, a whole number from -8640000000000000 to 8640000000000000, got 1.5"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "rolling", periodMs: 5, buckets: 6 }),
        "limiters.q.strategy",
        "buckets must be at most 10000 and at most periodMs (a bucket is at least 1 ms wide), got 6 buckets over 5 ms"
      )
      expectProblem(
        yield* quota({ limit: 1, resetCadence: "fixed", period: "36600d" }),
        "limiters.q.strategy",
        "its period takes 3162240000000 ms, more than the 3155760000000 ms (100 years) a policy may span"
      )
      expectProblem(
        yield* quota({ ...monthly, federated: {} }),
        "limiters.q.strategy",
        "federated needs a windowed strategy (fixedWindow or slidingWindow), got quota"
      )
    }))

  it.effect("a quota with twoTier or as a unified admitter's rate axis", () =>
    Effect.gen(function*() {
      const leased = yield* onePolicy({
        strategy: "quota",
        limit: 100,
        resetCadence: "calendar-day",
        twoTier: { batch: 10 }
      })
      expect(leased.kind === "limiter" && leased.strategy).toEqual({
        kind: "quota",
        resetCadence: "calendar-day",
        limit: 100,
        offsetMinutes: 0
      })
      const unified = yield* onePolicy({
        strategy: "quota",
        limit: 3,
        resetCadence: "calendar-week",
        weekStartsOn: 0,
        concurrency: {}
      })
      expect(unified.kind === "admitter" && unified.rate).toEqual({
        kind: "quota",
        resetCadence: "calendar-week",
        limit: 3,
        offsetMinutes: 0,
        weekStartsOn: 0
      })
    }))

  it.effect("two kind blocks", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, concurrency: {}, twoTier: { batch: 2 } } } }),
        "limiters.api",
        "has concurrency and twoTier blocks; a policy carries at most one of tokenBudget, fleetBudget, federated, fairEscrow, federatedFairEscrow, concurrency, distributedConcurrency, twoTier"
      )
    }))

  it.effect("unknown fields, at every level", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, brust: 5 } } }),
        "limiters.api.brust",
        "unknown field; a gcra policy takes strategy, limit, period, periodMs, windowMs, burst, prefix, maxKeys, shadow"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { strategy: "fixedWindow", limit: 1, periodMs: 100 } } }),
        "limiters.api.periodMs",
        "unknown field; a fixedWindow policy takes strategy, limit, period, windowMs, prefix, maxKeys, shadow"
      )
      expectProblem(
        yield* failureOf({ limiters: { api: { ...gcra, twoTier: { batch: 2, bacth: 3 } } } }),
        "limiters.api.twoTier.bacth",
        "unknown field; twoTier takes mode, batch, lowWater, windowCoupled, returnIdleAfterMs"
      )
      expectProblem(
        yield* failureOf({ limiters: { llm: { strategy: "gcra", tokenBudget: { budget: 1, windowMs: 1 } } } }),
        "limiters.llm.strategy",
        "unknown field; a tokenBudget policy takes tokenBudget, prefix, shadow"
      )
      expectProblem(
        yield* failureOf({ limiters: { llm: { tokenBudget: { budget: 1, windowMs: 1, prefix: "x" } } } }),
        "limiters.llm.tokenBudget.prefix",
        "unknown field; tokenBudget takes budget, windowMs, maxKeys"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { aggregate: "min" } } } }),
        "limiters.w.concurrency.aggregate",
        "unknown field; concurrency takes minLimit, maxLimit, initialLimit, algorithm, rttWindow, smoothing, tolerance, backoffRatio"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { limit: 5, concurrency: {} } } }),
        "limiters.w.limit",
        "unknown field; a concurrency policy takes concurrency, prefix, maxKeys, shadow"
      )
    }))

  it.effect("kind block rules", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { f: { ...gcra, federated: {} } } }),
        "limiters.f.strategy",
        "federated needs a windowed strategy (fixedWindow or slidingWindow), got gcra"
      )
      expectProblem(
        yield* failureOf({ limiters: { t: { ...gcra, twoTier: {} } } }),
        "limiters.t.twoTier.batch",
        "required in leased mode"
      )
      expectProblem(
        yield* failureOf({ limiters: { t: { ...gcra, twoTier: { mode: "lazy", batch: 1 } } } }),
        "limiters.t.twoTier.mode",
        "expected one of leased, strict, cached-deny, got \"lazy\""
      )
      expectProblem(
        yield* failureOf({ limiters: { t: { ...gcra, twoTier: null } } }),
        "limiters.t.twoTier",
        "expected a map of settings, got null (write `twoTier: {}` for the defaults)"
      )
      expectProblem(
        yield* failureOf({ limiters: { llm: { tokenBudget: { windowMs: "1m" } } } }),
        "limiters.llm.tokenBudget.budget",
        "required"
      )
      expectProblem(
        yield* failureOf({ limiters: { e: { fairEscrow: { limit: 1, windowMs: 1, quantum: 4 } } } }),
        "limiters.e.fairEscrow.quantum",
        "unknown field; fairEscrow takes limit, windowMs, weights, maxKeys, costRoom, costRoomMaxKeys, " +
          "costRoomRingSize, unit"
      )
      expectProblem(
        yield* failureOf({ limiters: { e: { federatedFairEscrow: {} } } }),
        "limiters.e.federatedFairEscrow.limit",
        "required"
      )
    }))

  it.effect("concurrency limits must be ordered", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { maxLimit: 2 } } } }),
        "limiters.w.concurrency",
        "minLimit (4, the default) must not exceed maxLimit (2)"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { minLimit: 2, maxLimit: 8, initialLimit: 9 } } } }),
        "limiters.w.concurrency.initialLimit",
        "must be between minLimit (2) and maxLimit (8), got 9"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { algorithm: "fixed", minLimit: 2, maxLimit: 8 } } } }),
        "limiters.w.concurrency",
        "algorithm fixed pins one ceiling, but minLimit, maxLimit and initialLimit differ (2, 8)"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { algorithm: "fixed" } } } }),
        "limiters.w.concurrency.maxLimit",
        "required with algorithm fixed (the pinned ceiling)"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { backoffRatio: 1 } } } }),
        "limiters.w.concurrency.backoffRatio",
        "expected a number in [0.5, 1), got 1"
      )
      expectProblem(
        yield* failureOf({ limiters: { w: { concurrency: { algorithm: "vegas" } } } }),
        "limiters.w.concurrency.algorithm",
        "expected one of gradient2, aimd, fixed, got \"vegas\""
      )
    }))

  it.effect("policy names and policy values", () =>
    Effect.gen(function*() {
      expectProblem(
        yield* failureOf({ limiters: { "": gcra } }),
        "limiters[\"\"]",
        "policy names must not be empty"
      )
      expectProblem(
        yield* failureOf({ limiters: { "my api": 5 } }),
        "limiters[\"my api\"]",
        "expected a map of policy settings, got 5"
      )
      // A name is at most 256 UTF-8 bytes (counted in bytes, not characters: "é" takes two).
      const longest = "é".repeat(128)
      expect((yield* PolicyFile.parse(toYaml({ limiters: { [longest]: gcra } }))).names).toEqual([longest])
      const tooLong = yield* failureOf({ limiters: { [`${longest}x`]: gcra } })
      expect(tooLong.reason).toBe("a policy name must be at most 256 UTF-8 bytes, got 257")
    }))

  it.effect("a bad policy fails the whole file (no partial set)", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(PolicyFile.parse(toYaml({
        limiters: { good: gcra, bad: { ...gcra, limit: -3 }, alsoGood: gcra }
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(
        PolicyFile.parse(toYaml({ limiters: { good: gcra, bad: { ...gcra, limit: -3 } } }))
      )
      expectProblem(error, "limiters.bad.limit", "expected a positive integer, got -3")
    }))

  it.effect("YAML syntax errors name the line", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PolicyFile.parse(
        "limiters:\n  api:\n    strategy: gcra\n    limit: [1, 2\n    period: 1s\n",
        "bad.yaml"
      ))
      expect(error.path).toBe("config")
      expect(error.reason).toMatch(/^line 5: /)
      expect(error.source).toBe("bad.yaml")
      const tabs = yield* Effect.flip(PolicyFile.parse("limiters:\n\tapi: {}\n"))
      expect(tabs.reason).toBe("line 2: Tabs are not allowed as indentation")
    }))

  it.effect("duplicate policy names: a YAML parse error, a JSON duplicate key, a PolicySet.make error", () =>
    Effect.gen(function*() {
      const yamlDup = yield* Effect.flip(PolicyFile.parse(
        "limiters:\n  api: { strategy: gcra, limit: 1, period: 1s }\n  other: { strategy: gcra, limit: 1, period: 1s }\n  api: { strategy: gcra, limit: 2, period: 1s }\n"
      ))
      expectProblem(yamlDup, "config", "line 4: Map keys must be unique")
      // `1` and "1" are different YAML keys but the same policy name.
      const numeric = yield* Effect.flip(
        PolicyFile.parse("limiters:\n  1: { concurrency: {} }\n  \"1\": { concurrency: {} }\n")
      )
      expectProblem(numeric, "config", "line 3: Map keys must be unique")
      const jsonDup = yield* Effect.flip(PolicyFile.parse(
        "{\n  \"limiters\": {\n    \"api\": { \"concurrency\": {} },\n    \"api\": { \"concurrency\": {} }\n  }\n}"
      ))
      expectProblem(jsonDup, "config", "line 4: duplicate key \"api\"")
      const set = yield* PolicyFile.parse("limiters:\n  api: { strategy: gcra, limit: 1, period: 1s }\n")
      const api = Option.getOrThrow(set.get("api"))
      expectProblem(
        yield* Effect.flip(PolicyFile.PolicySet.make([api, { ...api, prefix: "x" }])),
        "limiters.api",
        "duplicate policy name"
      )
    }))

  it.effect("JSON syntax errors name the line; a JSON array top level is rejected", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PolicyFile.parse("{\n  \"limiters\": {\n    \"api\": 1\n    \"x\": 2\n  }\n}"))
      expectProblem(error, "config", "line 4: Expected ',' or '}' after property value")
      const array = yield* Effect.flip(PolicyFile.parse("[{\"limiters\": {}}]"))
      expectProblem(array, "config", "expected a map at the top level, got a list")
    }))
})

describe("PolicySet", () => {
  const api: LimiterPolicy = {
    kind: "limiter",
    name: "api",
    prefix: "api",
    strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 },
    maxKeys: 10
  }

  it.effect("make keeps order and answers get / has / names / size", () =>
    Effect.gen(function*() {
      const meter: Policy = {
        kind: "meter",
        name: "llm",
        prefix: "llm",
        budget: 10,
        windowMs: 1000,
        maxKeys: 10,
        shared: false
      }
      const set = yield* PolicyFile.PolicySet.make([meter, api])
      expect(set.names).toEqual(["llm", "api"])
      expect(set.size).toBe(2)
      expect(set.has("api")).toBe(true)
      expect(set.get("api")).toEqual(Option.some(api))
      expect(set.get("missing")).toEqual(Option.none())
      expect(Object.isFrozen(set.policies)).toBe(true)
      expect(PolicyFile.PolicySet.empty.size).toBe(0)
    }))

  it.effect("make validates each policy against its schema and its cross-field rules", () =>
    Effect.gen(function*() {
      const negative = yield* Effect.flip(
        PolicyFile.PolicySet.make([{ ...api, strategy: { kind: "gcra", limit: -1, periodMs: 1000, burst: 5 } }])
      )
      expect(negative.path).toBe("limiters.api.strategy.limit")
      expect(negative.reason).toMatch(/positive/)
      const unnamed = yield* Effect.flip(PolicyFile.PolicySet.make([{ ...api, name: "" }]))
      expectProblem(unnamed, "limiters[\"\"]", "policy names must not be empty")
      const admitter: Policy = {
        kind: "admitter",
        name: "w",
        prefix: "w",
        maxKeys: 1,
        concurrency: { ...concurrencyDefaults, minLimit: 10, maxLimit: 5, initialLimit: 10 }
      }
      expectProblem(
        yield* Effect.flip(PolicyFile.PolicySet.make([admitter])),
        "limiters.w.concurrency.maxLimit",
        "must be at least minLimit (10), got 5"
      )
      const quota = (strategy: unknown) =>
        Effect.flip(PolicyFile.PolicySet.make([{ ...api, strategy } as unknown as Policy]))
      const offset = yield* quota({ kind: "quota", resetCadence: "calendar-day", limit: 1, offsetMinutes: 900 })
      expect(offset.path).toBe("limiters.api.strategy.offsetMinutes")
      expect(offset.reason).toMatch(/840/)
      const weekStart = yield* quota({
        kind: "quota",
        resetCadence: "calendar-week",
        limit: 1,
        offsetMinutes: 0,
        weekStartsOn: 7
      })
      expect(weekStart.path).toBe("limiters.api.strategy.weekStartsOn")
      // A field another cadence takes is an excess property here.
      const excess = yield* quota({
        kind: "quota",
        resetCadence: "calendar-month",
        limit: 1,
        offsetMinutes: 0,
        weekStartsOn: 0
      })
      expect(excess.path).toBe("limiters.api.strategy.weekStartsOn")
      const missing = yield* quota({ kind: "quota", resetCadence: "fixed", limit: 1, anchor: 0 })
      expect(missing.path).toBe("limiters.api.strategy.periodMs")
      const cadence = yield* quota({ kind: "quota", resetCadence: "yearly", limit: 1 })
      expect(cadence.path).toBe("limiters.api.strategy.resetCadence")
      expectProblem(
        yield* quota({ kind: "quota", resetCadence: "rolling", limit: 1, periodMs: 10, buckets: 11 }),
        "limiters.api.strategy",
        "buckets must be at most 10000 and at most periodMs (a bucket is at least 1 ms wide), got 11 buckets over 10 ms"
      )
      const federatedGcra: Policy = { ...api, federated: { batch: 1, region: "r", prefix: "p" } }
      expectProblem(
        yield* Effect.flip(PolicyFile.PolicySet.make([federatedGcra])),
        "limiters.api.strategy",
        "federated needs a windowed strategy (fixedWindow or slidingWindow), got gcra"
      )
    }))
})

describe("PolicyFile.decode", () => {
  it.effect("decodes an in-memory config object with the same rules", () =>
    Effect.gen(function*() {
      const set = yield* PolicyFile.decode({ limiters: { api: { strategy: "gcra", limit: 2, period: "1s" } } })
      expect(set.names).toEqual(["api"])
      const error = yield* Effect.flip(PolicyFile.decode({ limiters: { api: { strategy: "gcra" } } }, "inline"))
      expect(error.message).toBe("limiters.api.limit: required (inline)")
    }))
})

describe("PolicyFile.parse never throws or dies (fuzz)", () => {
  /** Runs `effect` and asserts it succeeded with a valid set or failed with a PolicyError, never a defect. */
  const assertTyped = (effect: Effect.Effect<PolicyFile.PolicySet, PolicyFile.PolicyError>): void => {
    const exit = Effect.runSync(Effect.exit(effect))
    if (Exit.isSuccess(exit)) {
      const isPolicy = Schema.is(Policy)
      for (const policy of exit.value) expect(isPolicy(policy)).toBe(true)
      expect(new Set(exit.value.names).size).toBe(exit.value.size)
      return
    }
    expect(Cause.isFailType(exit.cause)).toBe(true)
    if (Cause.isFailType(exit.cause)) expect(exit.cause.error).toBeInstanceOf(PolicyFile.PolicyError)
  }

  it("random strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => assertTyped(PolicyFile.parse(text))),
      {
        numRuns: 500
      }
    )
    fc.assert(fc.property(fc.json(), (text) => assertTyped(PolicyFile.parse(text))), { numRuns: 300 })
  })

  it("random YAML-ish lines built from config words", () => {
    const word = fc.constantFrom(
      "limiters:",
      "  api:",
      "    strategy: gcra",
      "    limit: 5",
      "    period: 1s",
      "    burst: -1",
      "    concurrency:",
      "      maxLimit: 3",
      "    twoTier: {",
      "  - a",
      "&x",
      "*x",
      "---",
      "\t",
      "# c",
      "version: 1",
      "defaults: { prefix: a }",
      "? [a]",
      ": b",
      "\"",
      "'"
    )
    fc.assert(
      fc.property(fc.array(word, { maxLength: 12 }), (lines) => assertTyped(PolicyFile.parse(lines.join("\n")))),
      { numRuns: 500 }
    )
  })

  it("random config-shaped objects, as JSON, as YAML and in memory", () => {
    const fieldName = fc.constantFrom(
      "strategy",
      "limit",
      "period",
      "periodMs",
      "windowMs",
      "burst",
      "capacity",
      "refillPerSec",
      "buckets",
      "resetCadence",
      "offsetMinutes",
      "weekStartsOn",
      "anchor",
      "prefix",
      "maxKeys",
      "tokenBudget",
      "fleetBudget",
      "concurrency",
      "distributedConcurrency",
      "twoTier",
      "federated",
      "fairEscrow",
      "budget",
      "minLimit",
      "maxLimit",
      "initialLimit",
      "algorithm",
      "mode",
      "batch",
      "region",
      "__proto__",
      "constructor",
      "toString"
    )
    const scalar = fc.oneof(
      fc.constantFrom(
        "gcra",
        "tokenBucket",
        "fixedWindow",
        "slidingWindow",
        "slidingWindowLog",
        "quota",
        "calendar-month",
        "calendar-week",
        "rolling",
        "fixed",
        "aimd",
        "leased",
        "strict",
        "1s",
        "1.5s",
        "0.5ms",
        "2d",
        ""
      ),
      fc.integer({ min: -5, max: 600 }),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.string({ maxLength: 8 })
    )
    const block = fc.dictionary(fieldName, scalar, { maxKeys: 6 })
    // Valid policies of every kind, each with a few fields (top level or in its block) overwritten or removed,
    // so the fuzz reaches the deep checks rather than stopping at the first field.
    const templates: ReadonlyArray<Record<string, unknown>> = [
      { strategy: "gcra", limit: 5, period: "1s", burst: 5 },
      { strategy: "tokenBucket", capacity: 5, refillPerSec: 1 },
      { strategy: "fixedWindow", limit: 5, windowMs: 1000, federated: { batch: 2, region: "r" } },
      { strategy: "slidingWindow", limit: 5, period: "1m", buckets: 4, twoTier: { batch: 3, lowWater: 1 } },
      { strategy: "slidingWindowLog", limit: 5, period: "1m" },
      { strategy: "quota", limit: 5, resetCadence: "calendar-week", weekStartsOn: 0, offsetMinutes: 60 },
      { strategy: "quota", limit: 5, resetCadence: "fixed", period: "1d", anchor: 5 },
      { strategy: "quota", limit: 5, resetCadence: "rolling", periodMs: 60_000, buckets: 6 },
      { tokenBudget: { budget: 10, windowMs: "1m" } },
      { fleetBudget: { budget: 10, windowMs: "1m", prefix: "f" } },
      { strategy: "gcra", limit: 5, period: "1s", concurrency: { minLimit: 2, maxLimit: 9, algorithm: "aimd" } },
      { distributedConcurrency: { maxLimit: 9, aggregate: "min", heartbeatMs: "1s" } }
    ]
    const mutated = fc.constantFrom(...templates).chain((template) => {
      const topKeys = Object.keys(template)
      const blockKey = topKeys.find((key) => typeof template[key] === "object")
      const blockKeys = blockKey === undefined ? [] : Object.keys(template[blockKey] as object)
      const extraKeys = ["prefix", "maxKeys", "burst", "minLimit", "initialLimit", "mode", "windowCoupled"]
      // One change per policy: overwrite a field, overwrite a field of its block, or drop a field.
      return fc.oneof(
        fc.tuple(fc.constantFrom(...topKeys, "prefix", "maxKeys"), fc.oneof(scalar, scalar, block)).map(
          ([key, value]) => ({ ...template, [key]: value })
        ),
        fc.tuple(fc.constantFrom(...blockKeys, ...extraKeys), scalar).map(([key, value]) =>
          blockKey === undefined
            ? { ...template, [key]: value }
            : { ...template, [blockKey]: { ...(template[blockKey] as object), [key]: value } }
        ),
        fc.constantFrom(...topKeys).map((dropped) => {
          const body: Record<string, unknown> = { ...template }
          delete body[dropped]
          return body
        })
      )
    })
    const policyBody = fc.oneof(
      { arbitrary: fc.dictionary(fieldName, fc.oneof(scalar, block), { maxKeys: 8 }), weight: 1 },
      { arbitrary: mutated, weight: 4 }
    )
    const anyConfig = fc.record(
      {
        version: fc.oneof(fc.constant(1), scalar),
        defaults: fc.oneof(fc.record({ prefix: scalar }), scalar),
        limiters: fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), policyBody, { maxKeys: 4 }), scalar),
        capture: fc.jsonValue()
      },
      { requiredKeys: [] }
    )
    // Mostly a well-formed top level, so most runs reach the policies.
    const wellFormedTop = fc.record(
      {
        version: fc.constant(1),
        defaults: fc.record({ prefix: fc.string({ maxLength: 4 }) }),
        limiters: fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), policyBody, { minKeys: 1, maxKeys: 4 })
      },
      { requiredKeys: ["limiters"] }
    )
    const config = fc.oneof({ arbitrary: anyConfig, weight: 1 }, { arbitrary: wellFormedTop, weight: 4 })
    fc.assert(
      fc.property(config, (value) => {
        assertTyped(PolicyFile.decode(value))
        assertTyped(PolicyFile.parse(JSON.stringify(value)))
        assertTyped(PolicyFile.parse(toYaml(value)))
      }),
      { numRuns: 500 }
    )
    fc.assert(fc.property(fc.anything(), (value) => assertTyped(PolicyFile.decode(value))), { numRuns: 300 })
  })
})
