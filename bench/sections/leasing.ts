/**
 * Leasing: the local spend of a fleet lease (what a leased limiter pays per request between grants), and
 * the two leased paths against their strict counterparts: tier 2 (Fleet.Reserve, batch 100) against
 * tier 1 (a Check per request) through the server, and `twoTier` leased (batch 100) against strict over
 * Redis.
 *
 * `leasing.spendNs` is measured with a clock read per spend, as a leased limiter needs `now` for every
 * spend; the row without it shows the spender alone.
 */
import { LeaseSpender } from "../../src/engine/leaseSpender.js"
import { measure, type Plan, syncBatched, type Workload } from "../harness.js"
import { LIMIT_PER_SEC } from "../policies.js"
import { type Section, type SectionOutcome, type Skipped } from "../section.js"

const WITH_CLOCK = "LeaseSpender.spend + Date.now()"
const ALONE = "LeaseSpender.spend (fixed now)"

/** A spender holding far more credits than a run can spend, in a window that does not end. */
const fundedSpender = (): LeaseSpender => {
  const spender = new LeaseSpender({ limit: LIMIT_PER_SEC, ttlMs: 1000, windowCoupled: true })
  spender.grant(Number.MAX_SAFE_INTEGER / 2, Date.now() + 24 * 3600 * 1000)
  return spender
}

const spendWorkload = (impl: string, clock: () => number): Workload => {
  const spender = fundedSpender()
  const spend = () => spender.spend(clock(), 1)
  return {
    ...syncBatched(impl, true, spend, 10_000),
    verify: () => {
      const result = spend()
      if (!("allowed" in result) || !result.allowed) throw new Error(`${impl}: a funded spend was not allowed`)
      return Promise.resolve()
    }
  }
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const fixedNow = Date.now()
  const results = await measure(
    "leasing.spend",
    [spendWorkload(WITH_CLOCK, Date.now), spendWorkload(ALONE, () => fixedNow)],
    plan
  )
  const withClock = results.find((r) => r.impl === WITH_CLOCK)!
  const alone = results.find((r) => r.impl === ALONE)!
  const skipped: Array<Skipped> = [
    {
      name: "leasing.tier2VsTier1",
      reason: "skipped: the Fleet door (Fleet.Reserve, src/fleet) is not built yet"
    },
    {
      name: "leasing.twoTierVsStrict",
      reason: "skipped: twoTier leasing over Redis (src/fleet, FleetBackend) is not built yet"
    }
  ]
  return {
    results,
    comparisons: [
      {
        name: "leasing.spendNs",
        value: 1e9 / withClock.opsPerSec,
        unit: "ns",
        detail: `ns per local spend, ${WITH_CLOCK} (lower is better)`,
        target: { op: "<=", value: 100 },
        headline: true
      },
      {
        name: "leasing.spendNsNoClock",
        value: 1e9 / alone.opsPerSec,
        unit: "ns",
        detail: `ns per local spend, ${ALONE}`,
        headline: false
      }
    ],
    skipped
  }
}

/** The leasing section. */
export const leasing: Section = { name: "leasing", run }
