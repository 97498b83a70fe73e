/**
 * Leasing: the local spend of a fleet lease (what a leased limiter pays per request between grants), and
 * the two leased paths against their strict counterparts: tier 2 (Fleet.Reserve, batch 100) against
 * tier 1 (a Check per request) through the server, and `twoTier` leased (batch 100) against strict over
 * Redis.
 *
 * - `leasing.spendNs` is the spender's local spend, `spend(now, 1)`, with `now` read once per batch of
 *   10,000 spends. Beside it: the same with `Date.now()` read for every spend, and `Date.now()` alone (the
 *   machine's clock read, which on some VMs costs more than the spend).
 * - `leasing.tier2VsTier1`: one caller, one budget domain of a federated fixed-window policy on our
 *   server (its own process, `throttlekit-effect serve`). Tier 2: a `Fleet.leased` limiter (FleetBackend)
 *   reserving 100 units per Reserve and spending them locally; tier 1: a Check RPC per request
 *   (ServiceBackend), which the server answers from its own leased credits.
 * - `leasing.twoTierVsStrict`: one caller checking one hot key of a fixed-window policy (a 60 s window, so
 *   window-coupled credits rarely die mid-round). Leased: `TwoTier` over the Redis door and the Redis
 *   coordinator, reserving 100 units per trip, in the background once 50 are left (`lowWater: 50`);
 *   strict: every check a Redis round trip.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import * as FleetBackend from "../../src/clients/FleetBackend.js"
import * as RedisCoordinator from "../../src/coordinator/RedisCoordinator.js"
import { LeaseSpender } from "../../src/engine/leaseSpender.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import { Fleet } from "../../src/services/Fleet.js"
import { layer as rateLimiterLayer, RateLimiter } from "../../src/services/RateLimiter.js"
import { MISSING_REDIS_HINT, redisServerAvailable, startRedisServer } from "../../test/support/redisServer.js"
import { sharedChildServer } from "../childServer.js"
import { effectBatched, effectSerial } from "../effectWorkloads.js"
import { measure, type Plan, type Result, syncBatched, type Workload } from "../harness.js"
import { FLEET_DOMAIN, FLEET_POLICY, HOT_KEY, LIMIT_PER_SEC } from "../policies.js"
import { type Comparison, ratio, type Section, type SectionOutcome, type Skipped } from "../section.js"

const SPEND = "LeaseSpender.spend"
const WITH_CLOCK = "LeaseSpender.spend + Date.now() each"
const CLOCK = "Date.now() alone"
const LEASED = "TwoTier leased (batch 100) over Redis"
/**
 * The leased rows are timed per batch of this many checks (one lease's worth, so each timed batch holds
 * about one refresh): a clock read per check costs ~15 % of a leased check here. Their p50 / p99 are
 * per-check means over a batch; the strict rows, a network call each, are timed per check.
 */
const LEASE_BATCH = 100
const STRICT = "strict (RedisBackend.check)"
const TIER2 = "tier 2: Fleet.leased (batch 100)"
const TIER1 = "tier 1: ServiceBackend.check"

/** A spender holding far more credits than a run can spend, in a window that does not end. */
const fundedSpender = (): LeaseSpender => {
  const spender = new LeaseSpender({ limit: LIMIT_PER_SEC, ttlMs: 1000, windowCoupled: true })
  spender.grant(Number.MAX_SAFE_INTEGER / 2, Date.now() + 24 * 3600 * 1000)
  return spender
}

const spendWorkload = (impl: string, clockPerSpend: boolean): Workload => {
  const spender = fundedSpender()
  let now = Date.now()
  const spend = clockPerSpend
    ? () => spender.spend(Date.now(), 1)
    : (i: number) => {
      if (i % 10_000 === 0) now = Date.now()
      return spender.spend(now, 1)
    }
  return {
    ...syncBatched(impl, true, spend, 10_000),
    verify: () => {
      const result = spend(0)
      if (!("allowed" in result) || !result.allowed) throw new Error(`${impl}: a funded spend was not allowed`)
      return Promise.resolve()
    }
  }
}

const windowPolicy = (name: string, mode: "leased" | "strict"): LimiterPolicy => ({
  kind: "limiter",
  name,
  prefix: name,
  strategy: { kind: "fixedWindow", limit: LIMIT_PER_SEC, windowMs: 60_000 },
  maxKeys: 100_000,
  twoTier: { mode, batch: 100, lowWater: 50, windowCoupled: true }
})

const twoTierVsStrict = async (plan: Plan): Promise<Array<Result>> => {
  const server = await startRedisServer()
  const policies = [windowPolicy("leased", "leased"), windowPolicy("strict", "strict")]
  const runtime = ManagedRuntime.make(
    rateLimiterLayer().pipe(
      Layer.provide(TwoTier.layer),
      Layer.provide(RedisBackend.layerStore({ policies, redis: server.url })),
      Layer.provide(RedisCoordinator.layer({ redis: server.url }))
    )
  )
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const workload = (impl: string, policy: string, batch: number): Workload => ({
      ...effectBatched(impl, runtime.runPromise, () => limiter.check(policy, HOT_KEY), batch),
      verify: () =>
        runtime.runPromise(limiter.check(policy, HOT_KEY)).then((decision) => {
          if (!decision.allowed) throw new Error(`${impl}: the first check was denied`)
        })
    })
    return await measure("leasing.twoTier", [
      workload(LEASED, "leased", LEASE_BATCH),
      workload(STRICT, "strict", 1)
    ], plan)
  } finally {
    await runtime.dispose()
    await server.close()
  }
}

const tier2VsTier1 = async (plan: Plan): Promise<Array<Result>> => {
  const server = await sharedChildServer()
  const runtime = ManagedRuntime.make(
    Layer.merge(FleetBackend.layer({ target: server.target }), ServiceBackend.layer({ target: server.target }))
  )
  try {
    const { leased, limiter } = await runtime.runPromise(Effect.gen(function*() {
      const fleet = yield* Fleet
      return {
        leased: yield* fleet.leased(FLEET_POLICY, { batch: 100, domain: FLEET_DOMAIN }),
        limiter: yield* RateLimiter
      }
    }))
    const expectAllowed = (impl: string) => (decision: { readonly allowed: boolean }) => {
      if (!decision.allowed) throw new Error(`${impl}: the first check was denied`)
    }
    const tier2: Workload = {
      ...effectBatched(TIER2, runtime.runPromise, () => leased.check(), LEASE_BATCH),
      verify: () => runtime.runPromise(leased.check()).then(expectAllowed(TIER2))
    }
    const tier1: Workload = {
      ...effectSerial(TIER1, runtime.runPromise, () => limiter.check(FLEET_POLICY, FLEET_DOMAIN)),
      verify: () => runtime.runPromise(limiter.check(FLEET_POLICY, FLEET_DOMAIN)).then(expectAllowed(TIER1))
    }
    return await measure("leasing.fleet", [tier2, tier1], plan)
  } finally {
    await runtime.dispose()
    // The server is shared with the other sections; main stops it at the end.
  }
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const results = await measure(
    "leasing.spend",
    [spendWorkload(SPEND, false), spendWorkload(WITH_CLOCK, true), syncBatched(CLOCK, false, Date.now, 10_000)],
    plan
  )
  const nsOf = (impl: string) => 1e9 / results.find((r) => r.impl === impl)!.opsPerSec
  const comparisons: Array<Comparison> = [
    {
      name: "leasing.spendNs",
      value: nsOf(SPEND),
      unit: "ns",
      detail: `ns per local spend, ${SPEND}(now, 1) (lower is better)`,
      target: { op: "<=", value: 100 },
      headline: true
    },
    {
      name: "leasing.spendWithClockNs",
      value: nsOf(WITH_CLOCK),
      unit: "ns",
      detail: `ns per local spend with a clock read, ${WITH_CLOCK}`,
      headline: false
    },
    {
      name: "leasing.clockReadNs",
      value: nsOf(CLOCK),
      unit: "ns",
      detail: "ns per Date.now() on this machine",
      headline: false
    }
  ]
  const skipped: Array<Skipped> = []
  results.push(...(await tier2VsTier1(plan)))
  comparisons.push(
    ratio(results, "leasing.tier2VsTier1", "leasing.fleet", TIER2, TIER1, {
      target: { op: ">=", value: 50 },
      headline: true
    })
  )
  if (redisServerAvailable()) {
    results.push(...(await twoTierVsStrict(plan)))
    comparisons.push(
      ratio(results, "leasing.twoTierVsStrict", "leasing.twoTier", LEASED, STRICT, {
        target: { op: ">=", value: 50 },
        headline: true
      })
    )
  } else {
    skipped.push({ name: "leasing.twoTierVsStrict", reason: `skipped: ${MISSING_REDIS_HINT}` })
  }
  return { results, comparisons, skipped }
}

/** The leasing section. */
export const leasing: Section = { name: "leasing", run }
