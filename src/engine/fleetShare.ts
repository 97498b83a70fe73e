/**
 * The fleet concurrency coordinator's arithmetic: one heartbeat of one node against the live set of a
 * policy's nodes. The Lua `distributedConcurrency.heartbeat` script computes the same thing, step for
 * step, in Redis; the in-process coordinator runs this function. Both follow the ThrottleKit core's
 * coordinator, so a mixed fleet (core nodes and ours) shares one ceiling.
 *
 * One heartbeat, at `now`, of a node reporting its local ceiling `lLocal`, its in-flight count and the
 * instant its lease lapses (`expiresAt`):
 * 1. Upsert the node, keeping the share it was last granted (0 when new). With acknowledged handoff, a
 *    report whose `seq` is not above the freshest one seen (`maxSeq`) is stale: it keeps the stored
 *    in-flight count and advances nothing.
 * 2. Drop every other node whose `expiresAt` is before `now` (the reporting node always stays).
 * 3. The global ceiling `lGlobal` = the minimum, or the lower median (index ⌊(n − 1) / 2⌋ of the sorted
 *    values), of the live nodes' `lLocal`.
 * 4. The node's target: `equal-split` gives ⌊lGlobal / n⌋, plus one for the first `lGlobal mod n` nodes by
 *    id (byte order); `demand-proportional` gives a node with spare share (`inflight < share`) its
 *    in-flight count plus one probe slot, and splits what those leave among the others (the "hungry"
 *    ones) as equal-split does, at least 1 each.
 * 5. The grant is the target capped by what the other live nodes hold: `max(0, min(target, lGlobal − Σ
 *    held))`, a node holding `max(share, inflight)` (with acknowledged handoff `max(unackedHigh,
 *    inflight)`, the largest grant it may still be applying).
 * 6. The grant is stored as the node's share. With handoff, a fresh report bumps the node's generation
 *    when the share changes and raises its `unackedHigh` to the grant, which falls back to the grant once
 *    the node reports it applied the current generation.
 *
 * The reply is `{ share, lGlobal, nodes, gen }` (`gen` 0 without handoff). Whole numbers throughout.
 *
 * @since 0.3.0
 */

/**
 * One node as the coordinator keeps it. Redis stores it as the space-separated integers `lLocal inflight
 * expiresAt share`, followed by `committedGen maxSeq unackedHigh` under acknowledged handoff.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetNode {
  lLocal: number
  inflight: number
  expiresAt: number
  share: number
  committedGen: number
  maxSeq: number
  unackedHigh: number
}

/**
 * How the nodes' local ceilings fold into the global one.
 *
 * @since 0.3.0
 * @category models
 */
export type Aggregate = "median" | "min"

/**
 * How the global ceiling is split among the nodes.
 *
 * @since 0.3.0
 * @category models
 */
export type Allocation = "equal-split" | "demand-proportional"

/**
 * The rules every node of a policy must agree on.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetRules {
  readonly aggregate: Aggregate
  readonly allocation: Allocation
  /** Acknowledged handoff (the core's opt-in; off unless a coordinator enables it). */
  readonly handoff: boolean
}

/**
 * One node's heartbeat report. `seq` and `appliedGen` matter under acknowledged handoff only (-1: absent).
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetReport {
  readonly nodeId: string
  readonly lLocal: number
  readonly inflight: number
  readonly expiresAt: number
  readonly seq: number
  readonly appliedGen: number
}

/**
 * The coordinator's answer to a heartbeat.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetGrant {
  readonly share: number
  readonly lGlobal: number
  readonly nodes: number
  readonly gen: number
}

/**
 * Orders node ids as Redis's Lua `table.sort` does: by their UTF-8 bytes.
 *
 * @since 0.3.0
 * @category utils
 */
export const compareIds = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b))

/**
 * The global ceiling of `limits` (not empty): their minimum, or their lower median.
 *
 * @since 0.3.0
 * @category utils
 */
export const aggregateOf = (limits: ReadonlyArray<number>, aggregate: Aggregate): number => {
  const sorted = [...limits].sort((a, b) => a - b)
  return aggregate === "min" ? sorted[0]! : sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** Node `self`'s target in the live set `ids` (sorted), before the cap. */
const targetOf = (
  self: string,
  ids: ReadonlyArray<string>,
  lGlobal: number,
  nodes: ReadonlyMap<string, FleetNode>,
  allocation: Allocation
): number => {
  if (allocation === "equal-split") {
    const base = Math.floor(lGlobal / ids.length)
    return base + (ids.indexOf(self) < lGlobal - base * ids.length ? 1 : 0)
  }
  const hungry: Array<string> = []
  let reserved = 0
  for (const id of ids) {
    const node = nodes.get(id)!
    if (node.inflight >= node.share) hungry.push(id)
    else reserved += node.inflight + 1
  }
  const me = nodes.get(self)!
  if (me.inflight < me.share) return me.inflight + 1
  const spare = Math.max(0, lGlobal - reserved)
  const base = Math.floor(spare / hungry.length)
  return Math.max(1, base + (hungry.indexOf(self) < spare - base * hungry.length ? 1 : 0))
}

/**
 * Applies one heartbeat to `nodes` (changed in place: the node upserted, expired peers removed, its grant
 * recorded) at `now` (epoch-ms) and answers the grant.
 *
 * @since 0.3.0
 * @category constructors
 */
export const applyHeartbeat = (
  nodes: Map<string, FleetNode>,
  report: FleetReport,
  now: number,
  rules: FleetRules
): FleetGrant => {
  const prior = nodes.get(report.nodeId)
  const priorShare = prior?.share ?? 0
  const priorGen = prior?.committedGen ?? 0
  const priorMaxSeq = prior?.maxSeq ?? 0
  const priorUnacked = prior?.unackedHigh ?? 0
  const fresh = !rules.handoff || report.seq < 0 || report.seq > priorMaxSeq
  const self: FleetNode = {
    lLocal: report.lLocal,
    inflight: fresh ? report.inflight : (prior?.inflight ?? report.inflight),
    expiresAt: report.expiresAt,
    share: priorShare,
    committedGen: priorGen,
    maxSeq: rules.handoff ? Math.max(priorMaxSeq, report.seq) : 0,
    unackedHigh: priorUnacked
  }
  nodes.set(report.nodeId, self)
  for (const [id, node] of nodes) {
    if (id !== report.nodeId && node.expiresAt < now) nodes.delete(id)
  }
  const ids = [...nodes.keys()].sort(compareIds)
  const lGlobal = aggregateOf(ids.map((id) => nodes.get(id)!.lLocal), rules.aggregate)
  const target = targetOf(report.nodeId, ids, lGlobal, nodes, rules.allocation)
  let held = 0
  for (const id of ids) {
    if (id === report.nodeId) continue
    const node = nodes.get(id)!
    held += Math.max(rules.handoff ? node.unackedHigh : node.share, node.inflight)
  }
  const granted = Math.max(0, Math.min(target, lGlobal - held))
  if (!rules.handoff) {
    self.share = granted
    return { share: granted, lGlobal, nodes: ids.length, gen: 0 }
  }
  if (fresh) {
    self.share = granted
    if (granted !== priorShare) self.committedGen = priorGen + 1
    self.unackedHigh = report.appliedGen >= self.committedGen ? granted : Math.max(priorUnacked, granted)
  }
  return { share: self.share, lGlobal, nodes: ids.length, gen: self.committedGen }
}
