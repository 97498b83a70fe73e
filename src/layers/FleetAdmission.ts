/**
 * Fleet-shared concurrency (`distributedConcurrency` policies) over a local store: a store wrapper that
 * admits these policies in this process, against this node's share of one fleet-wide ceiling, and hands
 * every other primitive to the store below. It is the ThrottleKit core's distributed guard:
 *
 * - Admission is local and costs no round trip: an engine `Admitter` (the same one the Memory door runs)
 *   whose ceiling is tightened to `min(share, local ceiling)` by the node's `FleetGate`. The local ceiling
 *   moves with what releases report (fixed, aimd or gradient2), as a plain concurrency admitter's does.
 * - One heartbeat per policy while the store is built, then a heartbeat fiber on a
 *   `Schedule.fixed(heartbeatMs)`: each reports the local ceiling and in-flight count to the coordinator
 *   and adopts the share it answers. A failed heartbeat applies `onCoordinatorOutage`; a node whose
 *   heartbeats stop landing fences itself off before the coordinator gives its share away (see
 *   `engine/fleetGate.ts`). Until a grant lands (the first beat failed), a `fail-closed` node admits
 *   nothing.
 * - A unified admitter (a rate strategy beside the block) checks its rate axis on the store below once the
 *   slot is taken (`rateCheck`), the concurrency axis first as everywhere; a rate denial gives the slot
 *   back untouched.
 * - Leases are this process's (as on the reference server): ids of 40 hex characters, the first 8 naming
 *   the policy; release and heartbeat of an id not minted here go to the store below.
 * - Closing the scope interrupts the heartbeat fibers, then tells the coordinator each node leaves, so
 *   its share goes back to the other nodes at once (best effort, bounded by the store's timeout).
 *
 * @since 0.3.0
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import type { ConcurrencyCoordinatorService } from "../coordinator/ConcurrencyCoordinator.js"
import { fleetKey } from "../coordinator/ConcurrencyCoordinator.js"
import { Admission, type Decision, type DecisionData, fromData } from "../Decision.js"
import { Admitter } from "../engine/admission.js"
import { FleetGate } from "../engine/fleetGate.js"
import type { FleetRules } from "../engine/fleetShare.js"
import type { RateLimiterError } from "../Errors.js"
import type { AdmitterPolicy, DistributedConcurrency } from "../Policy.js"
import { sha1Hex } from "../redis/Scripts.js"
import type {
  AcquireOptions,
  BoundAdmitter,
  FleetGuardState,
  HeartbeatResult,
  LocalStore,
  StoreLeases
} from "../services/RateLimiterStore.js"

/**
 * The node id a fleet node reports when none is given: `<hostname>#<pid>`, as the ThrottleKit core's
 * server defaults it.
 *
 * @since 0.3.0
 * @category constructors
 */
export const defaultNodeId = (): string => `${hostname()}#${process.pid}`

/**
 * A unified admitter's rate axis: a consuming check of `cost` on `key`.
 *
 * @since 0.3.0
 * @category models
 */
export type RateCheck = (key: string, cost: number) => Effect.Effect<Decision, RateLimiterError>

/**
 * What the wrapper needs.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetAdmissionOptions {
  readonly coordinator: ConcurrencyCoordinatorService
  /** This process's id among the fleet's nodes (unique per process; see `defaultNodeId`). */
  readonly nodeId: string
  /** The rate axis of a unified `distributedConcurrency` policy (none: the policy has no rate axis). */
  readonly rateCheck?: (policy: AdmitterPolicy) => RateCheck | undefined
}

/** One policy's node: its engine, its gate and its coordinator key. */
interface Node {
  readonly policy: AdmitterPolicy
  readonly fleet: DistributedConcurrency
  readonly key: string
  readonly engine: Admitter
  readonly gate: FleetGate
  readonly tag: string
  readonly rate: RateCheck | undefined
}

/** True when `policy` is a `distributedConcurrency` admitter. */
const isFleet = (policy: { readonly kind: string }): policy is AdmitterPolicy & {
  readonly distributed: DistributedConcurrency
} => policy.kind === "admitter" && (policy as AdmitterPolicy).distributed !== undefined

const rulesOf = (fleet: DistributedConcurrency): FleetRules => ({
  aggregate: fleet.aggregate,
  allocation: fleet.allocation,
  handoff: false
})

/**
 * Wraps `inner`: its `distributedConcurrency` admitters are admitted here, one heartbeat fiber each in the
 * scope; every other primitive is `inner`'s. Without such policies, `inner` itself.
 *
 * @since 0.3.0
 * @category constructors
 */
export const wrap = (
  inner: LocalStore,
  options: FleetAdmissionOptions
): Effect.Effect<LocalStore, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ttlMs = inner.leases.ttlMs
    const nodes = new Map<string, Node>()
    for (const policy of inner.policies) {
      if (!isFleet(policy)) continue
      const fleet = policy.distributed
      const gate = new FleetGate(
        { onOutage: fleet.onCoordinatorOutage, heartbeatMs: fleet.heartbeatMs, leaseTtlMs: 2 * fleet.heartbeatMs },
        policy.concurrency.initialLimit
      )
      const engine = new Admitter(policy.concurrency, undefined, ttlMs, {
        ceiling: (now, localLimit) => gate.ceiling(now, localLimit)
      })
      nodes.set(policy.name, {
        policy,
        fleet,
        key: fleetKey(fleet.prefix, policy.name),
        engine,
        gate,
        tag: sha1Hex(`fleet:${policy.name}`).slice(0, 8),
        rate: options.rateCheck?.(policy)
      })
    }
    if (nodes.size === 0) return inner

    /** The node that minted each held lease id. */
    const owners = new Map<string, Node>()
    const forget = (ids: ReadonlyArray<string>) => {
      for (const id of ids) owners.delete(id)
    }

    // Added before the fibers are forked, so they run after the fibers are interrupted.
    for (const node of nodes.values()) {
      yield* Effect.addFinalizer(() => Effect.ignore(options.coordinator.leave(node.key, options.nodeId)))
    }
    // Each policy's first heartbeat lands before the store is handed out (one coordinator round trip,
    // bounded like every other): a node that just started admits against its share from its first call,
    // where a `fail-closed` one would refuse every call until a forked first beat landed.
    const beats = Array.from(nodes.values(), (node) => ({ node, beat: heartbeat(node, options, forget) }))
    yield* Effect.forEach(beats, ({ beat }) => beat, { concurrency: "unbounded", discard: true })
    for (const { beat, node } of beats) {
      yield* Effect.forkScoped(
        Effect.zipRight(
          Effect.sleep(node.fleet.heartbeatMs),
          Effect.repeat(beat, Schedule.fixed(node.fleet.heartbeatMs))
        )
      )
    }

    const admitter = (policy: AdmitterPolicy): BoundAdmitter => {
      const node = nodes.get(policy.name)
      return node === undefined ? inner.admitter(policy) : { acquire: acquireOn(node, owners, forget) }
    }

    const leases: StoreLeases = {
      ttlMs,
      release: (id, dropped) => {
        const owner = owners.get(id)
        if (owner === undefined) return inner.leases.release(id, dropped)
        return Effect.map(Clock.currentTimeMillis, (now) => {
          owners.delete(id)
          forget(owner.engine.release(now, id, dropped).reclaimed)
        })
      },
      heartbeat: (ids) => heartbeatLeases(ids, owners, forget, inner.leases)
    }

    const fleetGuards = (now: number): ReadonlyArray<FleetGuardState> =>
      Array.from(nodes.values(), (node) => ({
        name: node.policy.name,
        limit: node.gate.ceiling(now, node.engine.guard.limit),
        inflight: node.engine.guard.inflight,
        share: node.gate.share,
        lGlobal: node.gate.lGlobal,
        nodes: node.gate.nodes,
        fenced: node.gate.fenced(now)
      }))

    return { ...inner, admitter, leases, fleetGuards }
  })

/** One heartbeat of the node: reports its ceiling and in-flight count, and adopts the share answered. */
const heartbeat = (
  node: Node,
  options: FleetAdmissionOptions,
  forget: (ids: ReadonlyArray<string>) => void
): Effect.Effect<void> => {
  const rules = rulesOf(node.fleet)
  let failing = false
  const beat = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    forget(node.engine.sweep(now))
    const sent = node.gate.send(now)
    const guard = node.engine.guard
    const exit = yield* Effect.exit(options.coordinator.heartbeat(node.key, {
      nodeId: options.nodeId,
      lLocal: guard.limit,
      inflight: guard.inflight,
      expiresAt: sent.expiresAt,
      seq: sent.seq,
      appliedGen: node.gate.appliedGen
    }, rules))
    if (Exit.isSuccess(exit)) {
      node.gate.granted(sent.seq, sent.expiresAt, exit.value)
      if (failing) {
        failing = false
        yield* Effect.logInfo(`fleet concurrency heartbeat of policy ${JSON.stringify(node.policy.name)} recovered`)
      }
      return
    }
    node.gate.failed(sent.seq, guard.limit)
    if (!failing) {
      failing = true
      yield* Effect.logWarning(
        `fleet concurrency heartbeat of policy ${JSON.stringify(node.policy.name)} failed ` +
          `(${node.fleet.onCoordinatorOutage}): ${Cause.pretty(exit.cause)}`
      )
    }
  }).pipe(
    Effect.withSpan("FleetAdmission.heartbeat", { attributes: { policy: node.policy.name } }),
    Effect.annotateLogs({ policy: node.policy.name, nodeId: options.nodeId })
  )
  return beat
}

const mintLeaseId = (tag: string): string => tag + randomBytes(16).toString("hex")

const admissionOf = (decision: DecisionData, leaseId: string, expiresAt: number, axis: "" | "rate" | "concurrency") =>
  new Admission({
    decision: fromData(decision),
    leaseId,
    leaseExpiresAt: expiresAt,
    bindingAxis: axis,
    policyDenied: false
  }, true)

/** The admission of `node`: the concurrency axis here, then (unified) the rate axis on the store below. */
const acquireOn = (
  node: Node,
  owners: Map<string, Node>,
  forget: (ids: ReadonlyArray<string>) => void
) =>
(key: string, options: AcquireOptions): Effect.Effect<Admission, RateLimiterError> =>
  Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    let id = mintLeaseId(node.tag)
    while (owners.has(id)) id = mintLeaseId(node.tag)
    const outcome = node.engine.acquire(now, id, key, options.cost)
    forget(outcome.reclaimed)
    if (outcome.axis !== "") return Effect.succeed(admissionOf(outcome.decision, "", 0, outcome.axis))
    owners.set(id, node)
    const rate = node.rate
    if (rate === undefined) return Effect.succeed(admissionOf(outcome.decision, id, outcome.expiresAt, ""))
    const giveBack = Effect.sync(() => {
      if (owners.get(id) === node) owners.delete(id)
      node.engine.cancel(id)
    })
    return Effect.flatMap(Effect.onInterrupt(Effect.exit(rate(key, options.cost)), () => giveBack), (exit) => {
      if (Exit.isFailure(exit)) return Effect.zipRight(giveBack, Effect.failCause(exit.cause))
      const decision = exit.value
      if (!decision.allowed) return Effect.as(giveBack, admissionOf(decision, "", 0, "rate"))
      const chosen = decision.remaining < outcome.decision.remaining ? decision : outcome.decision
      return Effect.succeed(admissionOf(chosen, id, outcome.expiresAt, ""))
    })
  })

/** Renews the ids minted here and hands the others to the store below; one answer, in the given order. */
const heartbeatLeases = (
  ids: ReadonlyArray<string>,
  owners: Map<string, Node>,
  forget: (ids: ReadonlyArray<string>) => void,
  below: StoreLeases
): Effect.Effect<HeartbeatResult, RateLimiterError> => {
  const mine = new Map<Node, Array<string>>()
  const others: Array<string> = []
  for (const id of ids) {
    const owner = owners.get(id)
    if (owner === undefined) others.push(id)
    else {
      const group = mine.get(owner)
      if (group === undefined) mine.set(owner, [id])
      else group.push(id)
    }
  }
  if (mine.size === 0) return below.heartbeat(ids)
  return Effect.gen(function*() {
    const fromBelow = others.length === 0 ? undefined : yield* below.heartbeat(others)
    const now = yield* Clock.currentTimeMillis
    const live = new Set<string>(fromBelow?.live ?? [])
    let nextDeadline = fromBelow?.nextDeadline ?? Number.POSITIVE_INFINITY
    for (const [owner, group] of mine) {
      const renewed = owner.engine.renew(now, group)
      forget(renewed.reclaimed)
      for (const id of renewed.gone) owners.delete(id)
      for (const id of renewed.live) live.add(id)
      nextDeadline = Math.min(nextDeadline, renewed.deadline)
    }
    return {
      live: ids.filter((id) => live.has(id)),
      reclaimed: ids.filter((id) => !live.has(id)),
      nextDeadline
    }
  })
}
