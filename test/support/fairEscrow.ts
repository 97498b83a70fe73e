/**
 * Fair-escrow scenarios shared by the engine, door and server tests: random tenants and weights, and op
 * sequences in which every window starts with each of its tenants joining (one 1-unit check each, in a
 * random order), then random checks. `replayEscrow` runs a scenario on the engine and reports, per check,
 * what the properties need: the window's total, whether all its tenants had joined, and whether the check
 * asked within the tenant's guarantee floor(weight * limit / total weight).
 */
import * as fc from "fast-check"
import type { DecisionData } from "../../src/Decision.js"
import { Escrow, MAX_GRANTS_PER_CHECK, RegionPool } from "../../src/engine/fairEscrow.js"

/** One check of a scenario: at `offset` ms after the scenario's start. */
export interface FairOp {
  readonly tenant: string
  readonly cost: number
  readonly offset: number
}

/** A fair-escrow scenario: the policy's numbers and its checks, in time order. */
export interface FairScenario {
  readonly limit: number
  readonly windowMs: number
  readonly weights: Readonly<Record<string, number>>
  readonly ops: ReadonlyArray<FairOp>
}

/** `tenant`'s guaranteed share of `limit` among `weights` (all of them active). */
export const guaranteeOf = (limit: number, weights: Readonly<Record<string, number>>, tenant: string): number => {
  let total = 0
  for (const w of Object.values(weights)) total += w
  return Math.floor(((weights[tenant] ?? 1) * limit) / total)
}

const TENANTS = ["t0", "t1", "t2", "t3"]

/** Scenarios with 2 to 4 tenants, one or two windows of 1000 ms, and up to 40 checks after the joins. */
export const fairScenario: fc.Arbitrary<FairScenario> = fc
  .record({
    count: fc.integer({ min: 2, max: 4 }),
    weights: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 4, maxLength: 4 }),
    extra: fc.integer({ min: 0, max: 40 }),
    windows: fc.integer({ min: 1, max: 2 }),
    seedOps: fc.array(
      fc.record({ tenant: fc.integer({ min: 0, max: 3 }), cost: fc.integer({ min: 1, max: 6 }) }),
      { maxLength: 40 }
    ),
    order: fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 4, maxLength: 4 })
  })
  .map(({ count, extra, order, seedOps, weights, windows }) => {
    const tenants = TENANTS.slice(0, count)
    const weightOf: Record<string, number> = {}
    tenants.forEach((t, i) => weightOf[t] = weights[i]!)
    let total = 0
    for (const w of Object.values(weightOf)) total += w
    // Large enough that every tenant's guarantee is at least 1: each joins within it.
    const limit = total + extra
    const windowMs = 1000
    const ops: Array<FairOp> = []
    for (let window = 0; window < windows; window++) {
      const base = window * windowMs
      const joins = [...tenants].sort((a, b) => order[TENANTS.indexOf(a)]! - order[TENANTS.indexOf(b)]!)
      joins.forEach((tenant) => ops.push({ tenant, cost: 1, offset: base }))
      seedOps.forEach(({ cost, tenant }, i) =>
        ops.push({ tenant: tenants[tenant % count]!, cost, offset: base + 1 + Math.floor((i * 900) / 40) })
      )
    }
    return { limit, windowMs, weights: weightOf, ops }
  })

/** What a property needs to know about one check of a replay. */
export interface FairStep {
  readonly op: FairOp
  readonly decision: DecisionData
  /** Units allowed in the check's window so far, this one included. */
  readonly windowTotal: number
  /** Whether every tenant of the scenario had joined the window before this check. */
  readonly joinedAll: boolean
  /** Whether the tenant's used units plus the cost fit its guarantee (all tenants active). */
  readonly withinGuarantee: boolean
}

/**
 * Follows a scenario's decisions (`decide(op, now)` answers each check) and reports every step. `start`
 * is a window-aligned epoch-ms.
 */
export const followScenario = (
  scenario: FairScenario,
  start: number,
  decisions: ReadonlyArray<DecisionData>
): Array<FairStep> => {
  const tenants = Object.keys(scenario.weights)
  const steps: Array<FairStep> = []
  let window = Number.NaN
  let total = 0
  let joined = new Set<string>()
  let used = new Map<string, number>()
  scenario.ops.forEach((op, i) => {
    const decision = decisions[i]!
    const w = Math.floor((start + op.offset) / scenario.windowMs)
    if (w !== window) {
      window = w
      total = 0
      joined = new Set()
      used = new Map()
    }
    const joinedAll = tenants.every((t) => joined.has(t))
    const before = used.get(op.tenant) ?? 0
    const withinGuarantee = before + op.cost <= guaranteeOf(scenario.limit, scenario.weights, op.tenant)
    joined.add(op.tenant)
    if (decision.allowed) {
      total += op.cost
      used.set(op.tenant, before + op.cost)
    }
    steps.push({ op, decision, windowTotal: total, joinedAll, withinGuarantee })
  })
  return steps
}

/** Runs a scenario on the engine (a local escrow) from a window-aligned `start` and reports each step. */
export const replayEscrow = (scenario: FairScenario, start = 1_700_000_000_000): Array<FairStep> => {
  const aligned = start - (start % scenario.windowMs)
  const escrow = new Escrow({ limit: scenario.limit, windowMs: scenario.windowMs, maxKeys: 100, local: true })
  const decisions = scenario.ops.map((op) => {
    const now = aligned + op.offset
    escrow.roll(now)
    return escrow.decide(escrow.enter(op.tenant, scenario.weights[op.tenant] ?? 1), op.cost, now)
  })
  return followScenario(scenario, aligned, decisions)
}

/**
 * `tenant`'s guarantee when the tenants are split between regions (`regionOf`) sharing one pool of
 * `limit`: its share floor(weight * g / regionWeight) of its region's guarantee g = floor(regionWeight *
 * limit / total weight).
 */
export const composedGuaranteeOf = (
  limit: number,
  weights: Readonly<Record<string, number>>,
  regionOf: (tenant: string) => string,
  tenant: string
): number => {
  let total = 0
  let region = 0
  for (const [t, w] of Object.entries(weights)) {
    total += w
    if (regionOf(t) === regionOf(tenant)) region += w
  }
  return Math.floor(((weights[tenant] ?? 1) * Math.floor((region * limit) / total)) / region)
}

/**
 * Follows the decisions of a scenario whose tenants are split between regions: like `followScenario`, with
 * each tenant's guarantee its composed one (`composedGuaranteeOf`).
 */
export const followFederated = (
  scenario: FairScenario,
  regionOf: (tenant: string) => string,
  start: number,
  decisions: ReadonlyArray<DecisionData>
): Array<FairStep> => {
  const guarantees: Record<string, number> = {}
  for (const t of Object.keys(scenario.weights)) {
    guarantees[t] = composedGuaranteeOf(scenario.limit, scenario.weights, regionOf, t)
  }
  return followScenario(scenario, start, decisions).map((step) => ({
    ...step,
    withinGuarantee: step.withinGuarantee && usedBefore(scenario, start, decisions, step) + step.op.cost <=
        guarantees[step.op.tenant]!
  }))
}

/** The units the step's tenant had been allowed in the step's window before the step. */
const usedBefore = (
  scenario: FairScenario,
  start: number,
  decisions: ReadonlyArray<DecisionData>,
  step: FairStep
): number => {
  const index = scenario.ops.indexOf(step.op)
  const window = Math.floor((start + step.op.offset) / scenario.windowMs)
  let used = 0
  for (let i = 0; i < index; i++) {
    const op = scenario.ops[i]!
    if (op.tenant !== step.op.tenant || Math.floor((start + op.offset) / scenario.windowMs) !== window) continue
    if (decisions[i]!.allowed) used += op.cost
  }
  return used
}

/**
 * Runs a scenario on the engine with its tenants split between regions (one escrow per region, one pool),
 * each check growing its region's budget as a federated policy does, and reports each step.
 */
export const replayFederated = (
  scenario: FairScenario,
  regionOf: (tenant: string) => string,
  start = 1_700_000_000_000
): Array<FairStep> => {
  const aligned = start - (start % scenario.windowMs)
  const pool = new RegionPool(scenario.limit, scenario.windowMs)
  const escrows = new Map<string, Escrow>()
  const decisions = scenario.ops.map((op) => {
    const now = aligned + op.offset
    const region = regionOf(op.tenant)
    let escrow = escrows.get(region)
    if (escrow === undefined) {
      escrow = new Escrow({ limit: scenario.limit, windowMs: scenario.windowMs, maxKeys: 100, local: false })
      escrows.set(region, escrow)
    }
    escrow.roll(now)
    const tenant = escrow.enter(op.tenant, scenario.weights[op.tenant] ?? 1)
    for (let grants = 0; grants < MAX_GRANTS_PER_CHECK; grants++) {
      const ask = escrow.ask(tenant, op.cost)
      if (ask === undefined || !escrow.granted(ask, pool.grant(region, ask.weight, ask.wantTotal, now))) break
    }
    return escrow.decide(tenant, op.cost, now)
  })
  return followFederated(scenario, regionOf, aligned, decisions)
}
