/**
 * The multi-dimension check on Redis, against the Memory door (engine vs Lua), with random policies of
 * every limiter strategy and meters, random histories and costs, on Effect's clock (`TestClock`):
 *
 * - all or nothing: a denied multi-check changes no dimension's state, on either door — every dimension
 *   peeks and forecasts as before, and on Redis every key holds the same value with the same absolute
 *   expiry (PEXPIRETIME; a sliding-window log compared on its live entries, since a check prunes departed
 *   ones as the single check does); an allowed one consumed every dimension;
 * - Memory and Redis answer every single check, debit and multi-check of a history identically;
 * - a multi-check of one dimension is a single check (or debit): same decisions on both doors, and on
 *   Redis the same stored state and expiry.
 *
 * Time scales are long (windows and periods from one minute up, the clock aligned to an hour and moved
 * at most 40 s per history), so no Redis key expires in real time while a history runs.
 * And the Redis-only rules: two dimensions on one Redis key (policies sharing a prefix) are refused, and
 * with the Redis clock a multi-check runs on one server instant.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, FastCheck as fc, TestClock } from "effect"
import type { Decision, MultiDecision } from "../../src/Decision.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy, Strategy } from "../../src/Policy.js"
import { type DimensionCheck, make as makeFront, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { type RedisEnv, TestRedis, testRedisLayer } from "./harness.js"

const RUNS = Number(process.env["CHECK_ALL_PROP_RUNS"] ?? 60)
/** A whole hour: every window and period below divides it, so none starts within a history. */
const T0 = 1_800_000_000_000
const SPANS = [60_000, 120_000, 300_000, 600_000] as const

const limitArb = fc.integer({ min: 1, max: 5 })
const spanArb = fc.constantFrom(...SPANS)

const strategyArb: fc.Arbitrary<Strategy> = fc.oneof(
  fc.record({ kind: fc.constant("gcra" as const), limit: limitArb, periodMs: spanArb, burst: limitArb }),
  fc.record({
    kind: fc.constant("tokenBucket" as const),
    capacity: limitArb,
    refillPerSec: fc.constantFrom(0.001, 0.002, 0.01, 0.05)
  }),
  fc.record({ kind: fc.constant("fixedWindow" as const), limit: limitArb, windowMs: spanArb }),
  fc.record({
    kind: fc.constant("slidingWindow" as const),
    limit: limitArb,
    windowMs: spanArb,
    buckets: fc.integer({ min: 1, max: 6 })
  }),
  fc.record({ kind: fc.constant("slidingWindowLog" as const), limit: limitArb, windowMs: spanArb }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("calendar-day" as const),
    limit: limitArb,
    offsetMinutes: fc.integer({ min: -840, max: 840 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("fixed" as const),
    limit: limitArb,
    periodMs: spanArb,
    anchor: fc.constant(0)
  })
)

/** A dimension's policy: a limiter's strategy, or a meter's budget. */
type Kind =
  | { readonly _tag: "limiter"; readonly strategy: Strategy }
  | { readonly _tag: "meter"; readonly budget: number; readonly windowMs: number }

const kindArb: fc.Arbitrary<Kind> = fc.oneof(
  { weight: 6, arbitrary: strategyArb.map((strategy): Kind => ({ _tag: "limiter", strategy })) },
  {
    weight: 1,
    arbitrary: fc.record({ budget: fc.integer({ min: 1, max: 8 }), windowMs: spanArb }).map((b): Kind => ({
      _tag: "meter",
      ...b
    }))
  }
)

const policyOf = (kind: Kind, name: string, prefix: string): Policy =>
  kind._tag === "limiter"
    ? { kind: "limiter", name, prefix, maxKeys: 10_000, strategy: kind.strategy }
    : { kind: "meter", name, prefix, maxKeys: 10_000, budget: kind.budget, windowMs: kind.windowMs, shared: false }

const costArb = fc.integer({ min: 1, max: 3 })

/**
 * A history: n dimensions (their policies), then steps, each after `dt` ms either a single check (or
 * debit) of dimension `dim` or a multi-check of all, with `costs`.
 */
const scenarioArb = fc.integer({ min: 2, max: 4 }).chain((n) =>
  fc.record({
    kinds: fc.array(kindArb, { minLength: n, maxLength: n }),
    steps: fc.array(
      fc.record({
        dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 })),
        multi: fc.boolean(),
        dim: fc.nat({ max: n - 1 }),
        costs: fc.array(costArb, { minLength: n, maxLength: n })
      }),
      { minLength: 1, maxLength: 8 }
    )
  })
)

/**
 * The doors of one history: Memory and Redis, over the same policies (their keys in a fresh namespace).
 * Their fronts answer a cost above a policy's capacity with the contract's denial (`overCapacity:
 * "deny"`), so such costs reach the engine and the scripts and are compared too.
 */
const doors = (env: RedisEnv, policies: ReadonlyArray<Policy>) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const memory = yield* Effect.flatMap(MemoryBackend.makeStore({ policies }), (store) =>
      makeFront(store, { overCapacity: "deny" }))
    const redis = yield* Effect.flatMap(
      RedisBackend.makeStore({ policies, redis: { client: env.client }, clock: "effect" }),
      (store) =>
        makeFront(store, { overCapacity: "deny" })
    )
    return { memory, redis }
  })

let histories = 0
const namespace = (env: RedisEnv, tag: string) => `${env.ns}:${tag}${histories++}`

/** A single check or debit, by the policy's kind. */
const single = (limiter: RateLimiterService, policy: Policy, key: string, cost: number) =>
  policy.kind === "meter" ? limiter.debit(policy.name, key, cost) : limiter.check(policy.name, key, cost)

const fields = (d: Decision) => [d.allowed, d.limit, d.remaining, d.resetAt, d.retryAfterMs]
const verdictFields = (v: MultiDecision) => ({
  allowed: v.allowed,
  binding: v.binding,
  decisions: v.decisions.map(fields)
})

/** What every dimension reads now, consuming nothing: peek and forecast. */
const reads = (limiter: RateLimiterService, checks: ReadonlyArray<DimensionCheck>) =>
  Effect.forEach(
    checks,
    (c) =>
      Effect.all([limiter.peek(c.policy, c.key), limiter.forecast(c.policy, c.key, c.cost ?? 1)]).pipe(
        Effect.map((
          [peek, forecast]
        ) => [fields(peek), forecast.spendableNow, forecast.nextReplenishAt, forecast.fullAt])
      )
  )

/**
 * The raw state at a Redis key and (`withExpiry`) its absolute expiry; a sliding-window log's live
 * entries only (score after `now - windowMs`), and no entry at all reads as no key. (Two keys written at
 * different real instants have different absolute expiries: the twin comparison leaves them out; the
 * single scripts' TTLs are checked against the engine in differential.test.ts, and the multi-check writes
 * with the same library parts.)
 */
const rawState = (env: RedisEnv, key: string, now: number, logWindowMs: number | undefined, withExpiry = true) =>
  Effect.promise(async () => {
    const type = await env.client.type(key)
    const expiry = async () => withExpiry ? Number(await env.client.call("PEXPIRETIME", key)) : 0
    switch (type) {
      case "none":
        return ["none"]
      case "string":
        return ["string", await env.client.get(key), await expiry()]
      case "hash":
        return ["hash", Object.entries(await env.client.hgetall(key)).sort(), await expiry()]
      case "zset": {
        const flat = await env.client.zrange(key, 0, -1, "WITHSCORES")
        const live: Array<string> = []
        for (let i = 0; i < flat.length; i += 2) {
          if (logWindowMs === undefined || Number(flat[i + 1]) > now - logWindowMs) live.push(flat[i]!, flat[i + 1]!)
        }
        return live.length === 0 ? ["none"] : ["zset", live, await expiry()]
      }
      default:
        return [type]
    }
  })

const logWindow = (policy: Policy): number | undefined =>
  policy.kind === "limiter" && policy.strategy.kind === "slidingWindowLog" ? policy.strategy.windowMs : undefined

const redisKeyOf = (policy: Policy, key: string) => `${policy.prefix}:${key}`

const outcomes = { allowed: 0, denied: 0 }

describe("checkAll on Redis vs Memory", () => {
  layer(testRedisLayer())((it) => {
    it.scoped.prop(
      "a denied multi-check changes no dimension's state (Memory and Redis); both doors answer every step alike",
      [scenarioArb],
      ([{ kinds, steps }]) =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const ns = namespace(env, "all")
          const policies = kinds.map((kind, i) => policyOf(kind, `p${i}`, `${ns}:p${i}`))
          const { memory, redis } = yield* doors(env, policies)
          const key = "k"
          let now = T0
          const raw = Effect.suspend(() =>
            Effect.forEach(policies, (p) => rawState(env, redisKeyOf(p, key), now, logWindow(p)))
          )
          for (const step of steps) {
            yield* TestClock.adjust(step.dt)
            now += step.dt
            if (!step.multi) {
              const policy = policies[step.dim]!
              const cost = step.costs[step.dim]!
              const [m, r] = [yield* single(memory, policy, key, cost), yield* single(redis, policy, key, cost)]
              expect(fields(r)).toEqual(fields(m))
              continue
            }
            const checks = policies.map((p, i): DimensionCheck => ({ policy: p.name, key, cost: step.costs[i]! }))
            const before = [yield* reads(memory, checks), yield* reads(redis, checks), yield* raw]
            const m = yield* memory.checkAll(checks)
            const r = yield* redis.checkAll(checks)
            expect(verdictFields(r)).toEqual(verdictFields(m))
            expect(m.allowed).toBe(m.decisions.every((d) => d.allowed))
            if (m.allowed) {
              outcomes.allowed++
              // Every dimension consumed: none reads as before.
              const after = yield* reads(memory, checks)
              for (let i = 0; i < checks.length; i++) expect(after[i]).not.toEqual(before[0]![i])
            } else {
              outcomes.denied++
              expect([yield* reads(memory, checks), yield* reads(redis, checks), yield* raw]).toEqual(before)
            }
          }
        }),
      { timeout: 120_000, fastCheck: { numRuns: RUNS } }
    )

    it.effect("the histories reached both verdicts many times", () =>
      Effect.sync(() => {
        expect(outcomes.allowed).toBeGreaterThan(10)
        expect(outcomes.denied).toBeGreaterThan(10)
      }))

    it.scoped.prop(
      "a multi-check of one dimension is a single check: same decisions (Memory, Redis), same Redis state",
      [
        kindArb,
        fc.array(fc.record({ dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 })), cost: costArb }), {
          minLength: 1,
          maxLength: 8
        })
      ],
      ([kind, ops]) =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const ns = namespace(env, "one")
          const [alone, within] = [policyOf(kind, "alone", `${ns}:a`), policyOf(kind, "within", `${ns}:w`)]
          const { memory, redis } = yield* doors(env, [alone, within])
          let now = T0
          for (const { cost, dt } of ops) {
            yield* TestClock.adjust(dt)
            now += dt
            const checks = [{ policy: "within", key: "k", cost }]
            const answers = [
              yield* single(memory, alone, "k", cost),
              (yield* memory.checkAll(checks)).decisions[0]!,
              yield* single(redis, alone, "k", cost),
              (yield* redis.checkAll(checks)).decisions[0]!
            ].map(fields)
            expect(answers).toEqual([answers[0], answers[0], answers[0], answers[0]])
            expect(yield* rawState(env, redisKeyOf(within, "k"), now, logWindow(within), false)).toEqual(
              yield* rawState(env, redisKeyOf(alone, "k"), now, logWindow(alone), false)
            )
          }
        }),
      { timeout: 120_000, fastCheck: { numRuns: RUNS } }
    )

    it.scoped("two dimensions on one Redis key (policies sharing a prefix) are refused, and nothing changes", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = namespace(env, "clash")
        const strategy: Strategy = { kind: "fixedWindow", limit: 3, windowMs: 600_000 }
        const policies: ReadonlyArray<Policy> = [
          { kind: "limiter", name: "a", prefix: `${ns}:shared`, maxKeys: 100, strategy },
          { kind: "limiter", name: "b", prefix: `${ns}:shared`, maxKeys: 100, strategy }
        ]
        const { redis } = yield* doors(env, policies)
        const error = yield* Effect.flip(redis.checkAll([{ policy: "a", key: "k" }, { policy: "b", key: "k" }]))
        expect(error._tag).toBe("InvalidArgument")
        expect(error.message).toContain("checks[1]")
        expect(yield* rawState(env, `${ns}:shared:k`, T0, undefined)).toEqual(["none"])
      }))

    it.scoped("on the Redis clock: one server instant for every dimension, all or nothing", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const ns = namespace(env, "time")
        const hourly = (name: string, limit: number): Policy => ({
          kind: "limiter",
          name,
          prefix: `${ns}:${name}`,
          maxKeys: 100,
          strategy: { kind: "fixedWindow", limit, windowMs: 3_600_000 }
        })
        const redis = yield* RedisBackend.make({
          policies: [hourly("a", 1), hourly("b", 1), hourly("c", 2)],
          redis: { client: env.client }
        })
        const checks = [{ policy: "a", key: "k" }, { policy: "b", key: "k" }, { policy: "c", key: "k" }]
        const first = yield* redis.checkAll(checks)
        expect(first.allowed).toBe(true)
        // One TIME for all: the three windows of one length end at the same instant.
        const windowEnd = first.decisions[0]!.resetAt
        expect(first.decisions.map((d) => d.resetAt)).toEqual([windowEnd, windowEnd, windowEnd])
        // a and b are spent: within the same window the next multi-check is denied and leaves c's unit.
        const second = yield* redis.checkAll(checks)
        const peek = yield* redis.peek("c", "k")
        if (second.decisions[0]!.resetAt === windowEnd) expect(second.allowed).toBe(false)
        if (peek.resetAt === windowEnd) expect(peek.remaining).toBe(1)
      }))
  })
})
