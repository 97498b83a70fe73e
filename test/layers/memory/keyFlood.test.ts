/**
 * A key flood never re-opens an exhausted limit on the Memory door (issue 15 item 4): a key table only
 * forgets a key whose state reads exactly as a fresh key's, so a key at remaining 0 stays denied
 * however many junk keys arrive, for every strategy, the token budget and an admitter's rate axis, and
 * held leases stay held. Checked through the real doors (`MemoryBackend.layer`: the service and its
 * synchronous `Local`) under `TestClock`; then a property (decisions with a tiny `maxKeys` equal those
 * of an unbounded table), the memory bound when keys go fresh, and the `onFull: "deny"` ceiling.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Logger, TestClock } from "effect"
import * as fc from "fast-check"
import type { Decision } from "../../../src/Decision.js"
import { PolicyStore } from "../../../src/layers/memory/KeyStore.js"
import { makeLocalLimiter } from "../../../src/layers/memory/Local.js"
import * as MemoryBackend from "../../../src/layers/MemoryBackend.js"
import { DEFAULT_MAX_KEYS, type Policy, type Strategy } from "../../../src/Policy.js"
import { PolicySet } from "../../../src/PolicySet.js"
import { RateLimiter } from "../../../src/services/RateLimiter.js"

const HOUR = 3_600_000

/** Every rate strategy at 10 per hour. */
const strategies: ReadonlyArray<Strategy> = [
  { kind: "gcra", limit: 10, periodMs: HOUR, burst: 10 },
  { kind: "tokenBucket", capacity: 10, refillPerSec: 10 / 3600 },
  { kind: "fixedWindow", limit: 10, windowMs: HOUR },
  { kind: "slidingWindow", limit: 10, windowMs: HOUR, buckets: 6 },
  { kind: "slidingWindowLog", limit: 10, windowMs: HOUR }
]

const LIMITERS = strategies.map((s) => s.kind)

/** A limiter per strategy ("gcra", "tokenBucket", …), the meter "tokens" and the admitter "pool". */
const policiesWith = (maxKeys: number): ReadonlyArray<Policy> => [
  ...strategies.map((strategy): Policy => ({
    kind: "limiter",
    name: strategy.kind,
    prefix: strategy.kind,
    strategy,
    maxKeys
  })),
  { kind: "meter", name: "tokens", prefix: "tokens", budget: 10, windowMs: HOUR, maxKeys, shared: false },
  {
    kind: "admitter",
    name: "pool",
    prefix: "pool",
    maxKeys,
    rate: { kind: "gcra", limit: 10, periodMs: HOUR, burst: 10 },
    concurrency: {
      algorithm: "fixed",
      minLimit: 3,
      maxLimit: 3,
      initialLimit: 3,
      backoffRatio: 0.5,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 10
    }
  }
]

/** The decision in `result`, failing the test with the fault when there is one. */
const decisionOf = (result: Either.Either<Decision, MemoryBackend.LocalError>): Decision => {
  if (Either.isLeft(result)) throw new Error(`expected a decision, got ${result.left._tag}: ${result.left.message}`)
  return result.right
}

const floods = [
  { maxKeys: DEFAULT_MAX_KEYS, junk: 120_000 },
  { maxKeys: 100, junk: 200 }
]

describe("a key flood on the Memory door", () => {
  for (const { junk, maxKeys } of floods) {
    it.effect(
      `an exhausted key of every strategy stays denied after ${junk} junk keys (maxKeys ${maxKeys})`,
      () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          const local = yield* MemoryBackend.Local
          yield* TestClock.adjust(1_000)
          for (const name of LIMITERS) {
            // The victim spends its 10 units through both doors, then is denied.
            for (let i = 0; i < 10; i++) {
              const decision = i % 2 === 0
                ? decisionOf(local.check(name, "victim"))
                : yield* limiter.check(name, "victim")
              expect(decision.allowed).toBe(true)
            }
            const denied = yield* limiter.check(name, "victim")
            expect(denied).toMatchObject({ allowed: false, limit: 10, remaining: 0 })
            const peeked = yield* limiter.peek(name, "victim")
            // Junk keys, each a check allowed with one unit left spent: through Local, every 50th through the service.
            for (let j = 0; j < junk; j++) {
              const key = `junk-${j}`
              const decision = j % 50 === 0 ? yield* limiter.check(name, key) : decisionOf(local.check(name, key))
              if (!decision.allowed || decision.remaining !== 9) {
                expect.fail(`${name}: junk key ${j} got ${JSON.stringify(decision)}`)
              }
            }
            // Same instant, same answer: the victim was not forgotten, through either door.
            expect(yield* limiter.check(name, "victim")).toEqual(denied)
            expect(decisionOf(local.check(name, "victim"))).toEqual(denied)
            expect(yield* limiter.peek(name, "victim")).toEqual(peeked)
            // And the junk keys kept their counts too.
            expect((yield* limiter.check(name, "junk-0")).remaining).toBe(8)
          }
        }).pipe(Effect.provide(MemoryBackend.layer({ policies: policiesWith(maxKeys) }))),
      60_000
    )

    it.effect(
      `an exhausted token budget stays exhausted after ${junk} junk keys (maxKeys ${maxKeys})`,
      () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          expect(yield* limiter.debit("tokens", "victim", 10)).toMatchObject({ allowed: true, remaining: 0 })
          const denied = yield* limiter.debit("tokens", "victim", 1)
          expect(denied).toMatchObject({ allowed: false, limit: 10, remaining: 0 })
          for (let j = 0; j < junk; j++) {
            const decision = yield* limiter.debit("tokens", `junk-${j}`, 1)
            if (!decision.allowed) expect.fail(`junk key ${j} was denied`)
          }
          expect(yield* limiter.debit("tokens", "victim", 1)).toEqual(denied)
          expect((yield* limiter.debit("tokens", "junk-0", 1)).remaining).toBe(8)
        }).pipe(Effect.provide(MemoryBackend.layer({ policies: policiesWith(maxKeys) }))),
      60_000
    )

    it.scoped(
      `held leases stay held and an exhausted rate axis stays denied after ${junk} junk keys (maxKeys ${maxKeys})`,
      () =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter
          // The victim spends its rate axis: 10 admissions, each released.
          for (let i = 0; i < 10; i++) {
            const admission = yield* limiter.leases.acquire("pool", "victim")
            expect(admission.held).toBe(true)
            yield* limiter.leases.release(admission.leaseId, false)
          }
          const denied = yield* limiter.leases.acquire("pool", "victim")
          expect(denied).toMatchObject({ bindingAxis: "rate", decision: { allowed: false, remaining: 0 } })
          // Two of the three slots held for the whole flood, by scoped admissions.
          const held = [yield* limiter.admit("pool", "holder"), yield* limiter.admit("pool", "holder")]
          expect(held.map((a) => a.held)).toEqual([true, true])
          for (let j = 0; j < junk; j++) {
            const admission = yield* limiter.leases.acquire("pool", `junk-${j}`)
            if (!admission.held) expect.fail(`junk key ${j} was not admitted (${admission.bindingAxis})`)
            yield* limiter.leases.release(admission.leaseId, false)
          }
          expect(yield* limiter.leases.acquire("pool", "victim")).toEqual(denied)
          const beat = yield* limiter.leases.heartbeat(held.map((a) => a.leaseId))
          expect(beat.live).toEqual(held.map((a) => a.leaseId))
          // The ceiling of 3 still counts both: one more slot, then a concurrency denial.
          expect((yield* limiter.leases.acquire("pool", "late")).held).toBe(true)
          expect((yield* limiter.leases.acquire("pool", "later")).bindingAxis).toBe("concurrency")
        }).pipe(Effect.provide(MemoryBackend.layer({ policies: policiesWith(maxKeys) }))),
      60_000
    )
  }

  it.effect("a table that grows past maxKeys logs one warning per policy", () => {
    const warnings: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push(String(message))
    })
    return Effect.gen(function*() {
      const local = yield* MemoryBackend.Local
      for (let j = 0; j < 500; j++) decisionOf(local.check("gcra", `junk-${j}`))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(`policy "gcra"`)
      expect(warnings[0]).toContain("maxKeys 100")
      expect(warnings[0]).toContain(`onFull: "grow"`)
      for (let j = 0; j < 500; j++) decisionOf(local.check("fixedWindow", `junk-${j}`))
      expect(warnings).toHaveLength(2)
      expect(warnings[1]).toContain(`policy "fixedWindow"`)
    }).pipe(
      Effect.provide(MemoryBackend.layer({ policies: policiesWith(100) })),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger))
    )
  })
})

describe("onFull: \"deny\"", () => {
  it.effect("keeps maxKeys as a ceiling: new keys are denied, existing keys decide as ever, room comes back", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const local = yield* MemoryBackend.Local
      for (let i = 0; i < 10; i++) expect(decisionOf(local.check("gcra", "victim")).allowed).toBe(true)
      const denied = decisionOf(local.check("gcra", "victim"))
      expect(denied).toMatchObject({ allowed: false, remaining: 0 })
      // The victim and 99 junk keys fill the table of 100; every later new key is denied, stores nothing.
      for (let j = 0; j < 200; j++) {
        const decision = j % 2 === 0
          ? decisionOf(local.check("gcra", `junk-${j}`))
          : yield* limiter.check("gcra", `junk-${j}`)
        if (j < 99) expect(decision).toMatchObject({ allowed: true, remaining: 9 })
        else {
          // Room comes back once a tenth of the table has expired: the junk keys' one unit, 360 s on.
          expect(decision).toEqual(
            expect.objectContaining({ allowed: false, limit: 10, remaining: 0, retryAfterMs: 360_001 })
          )
        }
      }
      expect(decisionOf(local.check("gcra", "victim"))).toEqual(denied)
      expect(decisionOf(local.check("gcra", "junk-0")).remaining).toBe(8)
      expect(decisionOf(local.peek("gcra", "junk-150"))).toMatchObject({ allowed: true, remaining: 10 })
      // The meter and the admitter's rate axis refuse new keys the same way.
      for (let j = 0; j < 100; j++) expect((yield* limiter.debit("tokens", `junk-${j}`)).allowed).toBe(true)
      expect(yield* limiter.debit("tokens", "one-more")).toMatchObject({ allowed: false, limit: 10, remaining: 0 })
      expect((yield* limiter.debit("tokens", "junk-0")).remaining).toBe(8)
      for (let j = 0; j < 100; j++) {
        const admission = yield* limiter.leases.acquire("pool", `junk-${j}`)
        expect(admission.held).toBe(true)
        yield* limiter.leases.release(admission.leaseId, false)
      }
      const refused = yield* limiter.leases.acquire("pool", "one-more")
      expect(refused).toMatchObject({ bindingAxis: "rate", decision: { allowed: false, limit: 10, remaining: 0 } })
      // 360 s on, the junk keys read fresh again: new keys get in, the victim has its one unit back.
      yield* TestClock.adjust(360_001)
      expect(decisionOf(local.check("gcra", "junk-150"))).toMatchObject({ allowed: true, remaining: 9 })
      expect(decisionOf(local.check("gcra", "victim"))).toMatchObject({ allowed: true, remaining: 0 })
      expect(decisionOf(local.check("gcra", "victim")).allowed).toBe(false)
    }).pipe(Effect.provide(MemoryBackend.layer({ policies: policiesWith(100), onFull: "deny" }))))
})

describe("onFull: \"deny\" sweeps", () => {
  it("a full table sweeps again only after a tenth of maxKeys refusals or once a tenth of its keys expired", () => {
    const start = 1_000_000
    let now = start
    const local = MemoryBackend.makeLocal({
      policies: Either.getOrThrow(PolicySet.validate(policiesWith(100))),
      now: () => now,
      onFull: "deny"
    })
    const check = (key: string) => decisionOf(local.check("gcra", key))
    // k0..k99, 1 ms apart: key i reads fresh from start + i + 360 000 (its one unit back).
    for (let i = 0; i < 100; i++, now++) expect(check(`k${i}`).allowed).toBe(true)
    // Full of live keys: refused until the 10th earliest expiry has passed (start + 9 + 360 000).
    expect(check("x0")).toMatchObject({ allowed: false, retryAfterMs: start + 360_010 - now })
    // k0 and k1 read fresh now, but the table does not scan again per refused key: the next sweep waits
    // for 10 refusals (this one is the 2nd).
    now = start + 360_001
    expect(check("y0")).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 9 })
    for (let i = 1; i <= 8; i++) expect(check(`y${i}`).allowed).toBe(false)
    // The 10th refusal is due: this key sweeps, k0 and k1 go, and it and one more get in.
    expect(check("y9").allowed).toBe(true)
    expect(check("y10").allowed).toBe(true)
    expect(check("y11")).toMatchObject({ allowed: false, retryAfterMs: 11 })
    // Past the 10th earliest expiry (k11's), the next new key sweeps at once.
    now = start + 360_012
    expect(check("z0").allowed).toBe(true)
    // Through all of it, the keys still counting kept their counts.
    expect(check("k99").remaining).toBe(8)
  })
})

// ---------------------------------------------------------------------------------------------------
// The table against an unbounded one
// ---------------------------------------------------------------------------------------------------

const strategyArb: fc.Arbitrary<Strategy> = fc.oneof(
  fc.record({
    kind: fc.constant("gcra" as const),
    limit: fc.integer({ min: 1, max: 5 }),
    periodMs: fc.integer({ min: 1, max: 200 }),
    burst: fc.integer({ min: 1, max: 5 })
  }),
  fc.record({
    kind: fc.constant("tokenBucket" as const),
    capacity: fc.integer({ min: 1, max: 5 }),
    refillPerSec: fc.oneof(fc.integer({ min: 5, max: 500 }), fc.double({ min: 5, max: 500, noNaN: true }))
  }),
  fc.record({
    kind: fc.constant("fixedWindow" as const),
    limit: fc.integer({ min: 1, max: 5 }),
    windowMs: fc.integer({ min: 1, max: 200 })
  }),
  fc.record({
    kind: fc.constant("slidingWindow" as const),
    limit: fc.integer({ min: 1, max: 5 }),
    windowMs: fc.integer({ min: 5, max: 200 }),
    buckets: fc.integer({ min: 1, max: 5 })
  }),
  fc.record({
    kind: fc.constant("slidingWindowLog" as const),
    limit: fc.integer({ min: 1, max: 5 }),
    windowMs: fc.integer({ min: 1, max: 200 })
  })
)

interface Op {
  readonly key: number
  readonly dt: number
  readonly cost: number
  readonly peek: boolean
}

const opArb: fc.Arbitrary<Op> = fc.record({
  key: fc.integer({ min: 0, max: 11 }),
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 300 })),
  cost: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 6 })),
  peek: fc.boolean()
})

/** A limiter "lim" on `strategy`, a meter "met" and an admitter "adm" rate-limited by `strategy`. */
const propertyPolicies = (strategy: Strategy, budgetWindowMs: number, maxKeys: number): PolicySet =>
  Either.getOrThrow(PolicySet.validate([
    { kind: "limiter", name: "lim", prefix: "lim", strategy, maxKeys },
    { kind: "meter", name: "met", prefix: "met", budget: 4, windowMs: budgetWindowMs, maxKeys, shared: false }
  ]))

/** One door over `store` at the clock `now()`: what a check, a peek and a debit of `op` answer. */
const answer = (store: PolicyStore, now: () => number, op: Op): ReadonlyArray<unknown> => {
  const local = makeLocalLimiter(store, now)
  const key = `k${op.key}`
  const meter = store.get("met")
  if (meter?.kind !== "meter") throw new Error("no meter")
  return [
    op.peek ? decisionOf(local.peek("lim", key)) : decisionOf(local.check("lim", key, op.cost)),
    meter.budget.check(key, now(), op.cost)
  ]
}

describe("a bounded key table decides as an unbounded one", () => {
  it("for random keys, times and costs, with maxKeys 1 to 4 (onFull: \"grow\")", () => {
    fc.assert(
      fc.property(
        strategyArb,
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(opArb, { minLength: 1, maxLength: 120 }),
        (strategy, budgetWindowMs, maxKeys, ops) => {
          let now = 1_700_000_000_000
          const clock = () => now
          const bounded = new PolicyStore(propertyPolicies(strategy, budgetWindowMs, maxKeys), 2000)
          const unbounded = new PolicyStore(propertyPolicies(strategy, budgetWindowMs, 1_000_000), 2000)
          for (const op of ops) {
            now += op.dt
            expect(answer(bounded, clock, op)).toEqual(answer(unbounded, clock, op))
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})

// ---------------------------------------------------------------------------------------------------
// The memory bound
// ---------------------------------------------------------------------------------------------------

/** The size of every table in `store`, by policy. */
const sizes = (store: PolicyStore): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const name of store.names) {
    const compiled = store.get(name)
    if (compiled?.kind === "limiter") out[name] = compiled.rate.size
    else if (compiled?.kind === "meter") out[name] = compiled.budget.size
  }
  return out
}

describe("the memory bound", () => {
  it("a table stays within maxKeys while its junk keys read fresh again before the next ones come", () => {
    let now = 1_700_000_000_000
    const store = new PolicyStore(Either.getOrThrow(PolicySet.validate(policiesWith(100))), 2000)
    const local = makeLocalLimiter(store, () => now)
    const meter = store.get("tokens")
    if (meter?.kind !== "meter") throw new Error("no meter")
    let largest = 0
    for (let j = 0; j < 1_000; j++) {
      // Two hours on, every earlier key of every policy reads fresh (its unit back, its window over).
      now += 2 * HOUR
      for (const name of LIMITERS) expect(decisionOf(local.check(name, `junk-${j}`)).remaining).toBe(9)
      expect(meter.budget.check(`junk-${j}`, now, 1).remaining).toBe(9)
      largest = Math.max(largest, ...Object.values(sizes(store)))
    }
    expect(largest).toBe(100)
  })

  it("a table grown by live keys comes back within maxKeys once they read fresh and new keys come", () => {
    let now = 1_700_000_000_000
    const reports: Array<MemoryBackend.FullTable> = []
    const store = new PolicyStore(Either.getOrThrow(PolicySet.validate(policiesWith(100))), 2000, {
      onFull: "grow",
      onTableFull: (event) => reports.push(event)
    })
    const local = makeLocalLimiter(store, () => now)
    // 1000 keys at one instant, all still counting: every table grows to hold them.
    for (let j = 0; j < 1_000; j++) for (const name of LIMITERS) decisionOf(local.check(name, `burst-${j}`))
    for (const name of LIMITERS) expect(sizes(store)[name]).toBe(1_000)
    expect(reports.map((r) => r.policy)).toEqual(LIMITERS)
    expect(reports.every((r) => r.maxKeys === 100 && r.keys === 100 && r.onFull === "grow")).toBe(true)
    // Two hours on they all read fresh: within a tenth of the grown size in new keys, the next sweep
    // drops them, and the tables stay within maxKeys from then on.
    now += 2 * HOUR
    const history: Array<number> = []
    for (let j = 0; j < 300; j++) {
      now += 2 * HOUR
      for (const name of LIMITERS) decisionOf(local.check(name, `after-${j}`))
      history.push(Math.max(...Object.values(sizes(store))))
    }
    expect(history.findIndex((size) => size <= 100)).toBeLessThanOrEqual(101)
    expect(history.slice(101).every((size) => size <= 100)).toBe(true)
    expect(reports).toHaveLength(LIMITERS.length)
  })

  it("with onFull: \"deny\" a table never holds more than maxKeys keys", () => {
    let now = 1_700_000_000_000
    const store = new PolicyStore(Either.getOrThrow(PolicySet.validate(policiesWith(100))), 2000, { onFull: "deny" })
    const local = makeLocalLimiter(store, () => now)
    let largest = 0
    let refused = 0
    for (let j = 0; j < 5_000; j++) {
      now += 1_000
      for (const name of LIMITERS) if (!decisionOf(local.check(name, `junk-${j}`)).allowed) refused++
      largest = Math.max(largest, ...Object.values(sizes(store)))
    }
    expect(largest).toBe(100)
    // Keys go fresh within the hour (the bucket sooner), so most new keys still get in over 5000 s.
    expect(refused).toBeGreaterThan(0)
    expect(refused).toBeLessThan(5 * 5_000)
  })
})
