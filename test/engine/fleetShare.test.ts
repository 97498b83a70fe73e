/**
 * The fleet concurrency heartbeat (`engine/fleetShare.ts`) against a plain oracle written from the
 * ThrottleKit core's description, step by step (no shared code): random report sequences over a few nodes,
 * with leases that lapse, every aggregate and allocation, with and without acknowledged handoff. Plus the
 * properties the core states: the shares granted never sum above the global ceiling while it stays the
 * same; a lone node gets the whole ceiling; equal-split converges to ⌊L/n⌋ (+1 for the first ids); a
 * demand-proportional idle node keeps one probe slot when L ≥ n; median and min are what they say.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import {
  type Aggregate,
  type Allocation,
  applyHeartbeat,
  type FleetGrant,
  type FleetNode,
  type FleetReport,
  type FleetRules
} from "../../src/engine/fleetShare.js"

interface OracleNode {
  readonly id: string
  lLocal: number
  inflight: number
  expiresAt: number
  share: number
  gen: number
  maxSeq: number
  unacked: number
}

/** The oracle: a list of nodes, rebuilt each heartbeat, every step spelled out with loops. */
class Oracle {
  nodes: Array<OracleNode> = []
  constructor(private readonly rules: FleetRules) {}

  beat(r: FleetReport, now: number): FleetGrant {
    const { aggregate, allocation, handoff } = this.rules
    let me = this.nodes.find((n) => n.id === r.nodeId)
    const isNew = me === undefined
    const priorShare = me?.share ?? 0
    const priorGen = me?.gen ?? 0
    const priorMaxSeq = me?.maxSeq ?? 0
    const priorUnacked = me?.unacked ?? 0
    const fresh = !handoff || r.seq < 0 || r.seq > priorMaxSeq
    const inflight = fresh || isNew ? r.inflight : me!.inflight
    me = {
      id: r.nodeId,
      lLocal: r.lLocal,
      inflight,
      expiresAt: r.expiresAt,
      share: priorShare,
      gen: priorGen,
      maxSeq: handoff ? (priorMaxSeq > r.seq ? priorMaxSeq : r.seq) : 0,
      unacked: priorUnacked
    }
    const live: Array<OracleNode> = [me]
    for (const n of this.nodes) if (n.id !== r.nodeId && !(n.expiresAt < now)) live.push(n)
    this.nodes = live
    // byte order of ASCII ids is code-unit order
    const ids = live.map((n) => n.id).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const values = live.map((n) => n.lLocal).sort((a, b) => a - b)
    let lGlobal = values[0]!
    if (aggregate === "median") {
      let index = 0
      while ((index + 1) * 2 <= values.length - 1) index++
      lGlobal = values[index]!
    }
    const count = ids.length
    let target = 0
    if (allocation === "equal-split") {
      const rank = ids.indexOf(r.nodeId)
      // hand out lGlobal units round-robin by rank
      for (let unit = 0; unit < lGlobal; unit++) if (unit % count === rank) target++
    } else if (me.inflight < me.share) {
      target = me.inflight + 1
    } else {
      const hungry: Array<string> = []
      let reserved = 0
      for (const id of ids) {
        const n = live.find((x) => x.id === id)!
        if (n.inflight >= n.share) hungry.push(id)
        else reserved += n.inflight + 1
      }
      const spare = lGlobal - reserved > 0 ? lGlobal - reserved : 0
      const rank = hungry.indexOf(r.nodeId)
      for (let unit = 0; unit < spare; unit++) if (unit % hungry.length === rank) target++
      if (target < 1) target = 1
    }
    let others = 0
    for (const n of live) {
      if (n.id === r.nodeId) continue
      const kept = handoff ? n.unacked : n.share
      others += kept > n.inflight ? kept : n.inflight
    }
    let share = lGlobal - others
    if (target < share) share = target
    if (share < 0) share = 0
    if (!handoff) {
      me.share = share
      return { share, lGlobal, nodes: count, gen: 0 }
    }
    if (fresh) {
      me.share = share
      if (share !== priorShare) me.gen = priorGen + 1
      me.unacked = priorUnacked > share ? priorUnacked : share
      if (r.appliedGen >= me.gen) me.unacked = share
    }
    return { share: me.share, lGlobal, nodes: count, gen: me.gen }
  }
}

const ids = ["a", "b", "c", "n1", "n2"] as const

const beatArb = fc.record({
  node: fc.constantFrom(...ids),
  lLocal: fc.integer({ min: 1, max: 40 }),
  inflight: fc.integer({ min: 0, max: 40 }),
  step: fc.integer({ min: 0, max: 1500 }),
  ttl: fc.integer({ min: 0, max: 3000 }),
  seq: fc.integer({ min: -1, max: 8 }),
  appliedGen: fc.integer({ min: -1, max: 8 })
})

const rulesArb = fc.record({
  aggregate: fc.constantFrom<Aggregate>("median", "min"),
  allocation: fc.constantFrom<Allocation>("equal-split", "demand-proportional"),
  handoff: fc.boolean()
})

type Beat = typeof beatArb extends fc.Arbitrary<infer T> ? T : never

const reportOf = (b: Beat, now: number): FleetReport => ({
  nodeId: b.node,
  lLocal: b.lLocal,
  inflight: b.inflight,
  expiresAt: now + b.ttl,
  seq: b.seq,
  appliedGen: b.appliedGen
})

const run = (rules: FleetRules, reports: ReadonlyArray<FleetReport>, now = 1_000) => {
  const nodes = new Map<string, FleetNode>()
  return reports.map((r) => applyHeartbeat(nodes, r, now, rules))
}

describe("fleetShare", () => {
  it("matches the oracle on random heartbeat sequences (every aggregate, allocation, handoff)", () => {
    fc.assert(
      fc.property(rulesArb, fc.array(beatArb, { minLength: 1, maxLength: 60 }), (rules, beats) => {
        const nodes = new Map<string, FleetNode>()
        const oracle = new Oracle(rules)
        let now = 1_700_000_000_000
        for (const b of beats) {
          now += b.step
          const report = reportOf(b, now)
          expect(applyHeartbeat(nodes, report, now, rules)).toEqual(oracle.beat(report, now))
          expect([...nodes.keys()].sort()).toEqual(oracle.nodes.map((n) => n.id).sort())
        }
      }),
      { numRuns: 500 }
    )
  })

  it("never grants more than the global ceiling in all, while it stays the same (GlobalCap)", () => {
    fc.assert(
      fc.property(
        rulesArb.map((r) => ({ ...r, handoff: false })),
        fc.integer({ min: 1, max: 30 }),
        fc.array(fc.record({ node: fc.constantFrom(...ids), inflight: fc.integer({ min: 0, max: 30 }) }), {
          minLength: 1,
          maxLength: 80
        }),
        (rules, L, beats) => {
          const nodes = new Map<string, FleetNode>()
          for (const b of beats) {
            const grant = applyHeartbeat(
              nodes,
              {
                nodeId: b.node,
                lLocal: L,
                inflight: Math.min(b.inflight, L),
                expiresAt: 10_000,
                seq: -1,
                appliedGen: -1
              },
              0,
              rules
            )
            expect(grant.lGlobal).toBe(L)
            let sum = 0
            for (const node of nodes.values()) sum += node.share
            expect(sum).toBeLessThanOrEqual(L)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("gives a lone node the whole ceiling; median is the lower median, min the minimum", () => {
    const rules: FleetRules = { aggregate: "median", allocation: "equal-split", handoff: false }
    const report = (nodeId: string, lLocal: number): FleetReport => ({
      nodeId,
      lLocal,
      inflight: 0,
      expiresAt: 5_000,
      seq: -1,
      appliedGen: -1
    })
    expect(run(rules, [report("a", 7)])).toEqual([{ share: 7, lGlobal: 7, nodes: 1, gen: 0 }])
    const median = run(rules, [report("a", 10), report("b", 6), report("c", 14), report("d", 8)])
    expect(median.map((g) => g.lGlobal)).toEqual([10, 6, 10, 8]) // {6,8,10,14}: lower median 8
    const min = run({ ...rules, aggregate: "min" }, [report("a", 10), report("b", 6), report("c", 14)])
    expect(min.map((g) => g.lGlobal)).toEqual([10, 6, 6])
  })

  it("equal-split converges to ⌊L/n⌋, one more for the first ids; a joiner waits for the incumbent", () => {
    const rules: FleetRules = { aggregate: "median", allocation: "equal-split", handoff: false }
    const beat = (nodeId: string): FleetReport => ({
      nodeId,
      lLocal: 7,
      inflight: 0,
      expiresAt: 5_000,
      seq: -1,
      appliedGen: -1
    })
    const nodes = new Map<string, FleetNode>()
    expect(applyHeartbeat(nodes, beat("a"), 0, rules).share).toBe(7)
    expect(applyHeartbeat(nodes, beat("b"), 0, rules).share).toBe(0) // a still holds 7
    for (let round = 0; round < 3; round++) for (const id of ["a", "b", "c"]) applyHeartbeat(nodes, beat(id), 0, rules)
    expect(["a", "b", "c"].map((id) => nodes.get(id)!.share)).toEqual([3, 2, 2])
  })

  it("evicts a node whose lease lapsed, and its share goes to the others", () => {
    const rules: FleetRules = { aggregate: "median", allocation: "equal-split", handoff: false }
    const nodes = new Map<string, FleetNode>()
    const at = (nodeId: string, now: number) =>
      applyHeartbeat(
        nodes,
        { nodeId, lLocal: 6, inflight: 0, expiresAt: now + 2000, seq: -1, appliedGen: -1 },
        now,
        rules
      )
    for (let round = 0; round < 3; round++) for (const id of ["a", "b", "c"]) at(id, 0)
    expect(at("a", 0).share).toBe(2)
    // c stops beating at 0: its lease lapses at 2000 and it is evicted by the first beat after that.
    expect(at("a", 2000).nodes).toBe(3)
    expect(at("b", 2001).nodes).toBe(2)
    at("a", 2001)
    expect(at("b", 2002).share).toBe(3)
    expect(at("a", 2002).share).toBe(3)
    expect(nodes.has("c")).toBe(false)
  })

  it("demand-proportional: an idle node keeps one probe slot when L ≥ n, a busy one takes the rest", () => {
    const rules: FleetRules = { aggregate: "median", allocation: "demand-proportional", handoff: false }
    const nodes = new Map<string, FleetNode>()
    const share: Record<string, number> = { n0: 0, n1: 0, n2: 0, n3: 0 }
    for (let round = 0; round < 40; round++) {
      for (const id of ["n0", "n1", "n2", "n3"]) {
        const inflight = id === "n0" ? share[id]! : 0
        share[id] = applyHeartbeat(
          nodes,
          {
            nodeId: id,
            lLocal: 12,
            inflight,
            expiresAt: 10_000,
            seq: -1,
            appliedGen: -1
          },
          0,
          rules
        ).share
      }
    }
    expect(share).toEqual({ n0: 9, n1: 1, n2: 1, n3: 1 })
  })
})
