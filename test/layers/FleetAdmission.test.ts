/**
 * Fleet-shared concurrency (`FleetAdmission`) with three nodes in one process, each a Memory store wrapped
 * around one in-process coordinator, under `TestClock`: a node's first heartbeat lands while it is built, so
 * it admits against its share from its first call, and a `fail-closed` node whose first heartbeat failed
 * admits nothing; the nodes
 * converge to an equal split of the global ceiling and each admits exactly its share; a node cut off from
 * the coordinator fences itself before its lease lapses, its share goes to the others, and it comes back
 * when the coordinator answers again; `local-only` serves through an outage; closing a node leaves the
 * fleet at once; a unified admitter's rate denial gives the slot back; leases not minted here pass through.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import * as ConcurrencyCoordinator from "../../src/coordinator/ConcurrencyCoordinator.js"
import { fromData } from "../../src/Decision.js"
import { ServiceUnavailable } from "../../src/Errors.js"
import * as FleetAdmission from "../../src/layers/FleetAdmission.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { AdmitterPolicy, DistributedConcurrency } from "../../src/Policy.js"
import * as RateLimiter from "../../src/services/RateLimiter.js"
import type { LocalStore } from "../../src/services/RateLimiterStore.js"
import { pool as pinned } from "../reliability/support.js"

const fleet = (overrides: Partial<DistributedConcurrency> = {}): DistributedConcurrency => ({
  aggregate: "median",
  allocation: "equal-split",
  prefix: "tk:fed",
  heartbeatMs: 1000,
  onCoordinatorOutage: "fail-closed",
  ...overrides
})

const pool = (distributed: DistributedConcurrency, ceiling = 6): AdmitterPolicy => ({
  ...pinned("pool", ceiling),
  distributed
})

/** A coordinator whose heartbeats fail for the nodes listed in `cut`. */
const cuttable = (inner: ConcurrencyCoordinator.ConcurrencyCoordinatorService, cut: Set<string>) => ({
  ...inner,
  heartbeat: (
    ...args: Parameters<ConcurrencyCoordinator.ConcurrencyCoordinatorService["heartbeat"]>
  ) =>
    cut.has(args[1].nodeId)
      ? Effect.fail(new ServiceUnavailable({ service: "coordinator", reason: "cut off" }))
      : inner.heartbeat(...args)
})

/** One node: its store, its front and the scope that holds its heartbeat fiber. */
const startNode = (
  nodeId: string,
  policy: AdmitterPolicy,
  coordinator: ConcurrencyCoordinator.ConcurrencyCoordinatorService,
  rateCheck?: FleetAdmission.RateCheck
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const build = Effect.gen(function*() {
      const inner = yield* MemoryBackend.makeStore({ policies: [policy] })
      const store: LocalStore = yield* FleetAdmission.wrap(inner, {
        coordinator,
        nodeId,
        ...(rateCheck === undefined ? {} : { rateCheck: () => rateCheck })
      })
      const limiter = yield* RateLimiter.make(store)
      return { store, limiter }
    })
    const { limiter, store } = yield* Scope.extend(build, scope)
    return { nodeId, scope, store, limiter }
  })

type Node = Effect.Effect.Success<ReturnType<typeof startNode>>

/** Takes slots until one is denied; returns the lease ids and the denial. */
const fill = (node: Node) =>
  Effect.gen(function*() {
    const held: Array<string> = []
    for (let i = 0; i < 20; i++) {
      const admission = yield* node.limiter.leases.acquire("pool", "k")
      if (!admission.held) return { held, denial: admission }
      held.push(admission.leaseId)
    }
    return yield* Effect.dieMessage("never denied")
  })

const releaseAll = (node: Node, ids: ReadonlyArray<string>) =>
  Effect.forEach(ids, (id) => node.limiter.leases.release(id, false), { discard: true })

const guardOf = (node: Node, now = 0) => node.store.fleetGuards!(now)[0]!

describe("FleetAdmission", () => {
  it.effect(
    "a node admits against its share from its first call; one whose first heartbeat failed (fail-closed) admits nothing; three nodes converge to an equal split",
    () =>
      Effect.gen(function*() {
        const cut = new Set<string>(["cold"])
        const coordinator = cuttable(yield* ConcurrencyCoordinator.makeMemory, cut)
        const policy = pool(fleet())
        // Its first heartbeat failed while it was built: no grant, share 0, nothing admitted.
        const cold = yield* startNode("cold", policy, coordinator)
        const refused = yield* cold.limiter.leases.acquire("pool", "k")
        expect(refused.held).toBe(false)
        expect(refused.bindingAxis).toBe("concurrency")
        yield* Scope.close(cold.scope, Exit.void)
        // Its first heartbeat landed while it was built (no clock has moved): the whole ceiling at once.
        const a = yield* startNode("a", policy, coordinator)
        expect(guardOf(a)).toMatchObject({ share: 6, lGlobal: 6, nodes: 1, fenced: false })
        const first = yield* a.limiter.leases.acquire("pool", "k")
        expect(first.held).toBe(true)
        if (first.held) yield* releaseAll(a, [first.leaseId])
        const b = yield* startNode("b", policy, coordinator)
        const c = yield* startNode("c", policy, coordinator)
        expect(guardOf(b).share).toBe(0) // a still holds 6
        yield* TestClock.adjust(3000)
        for (const node of [a, b, c]) {
          expect(guardOf(node)).toMatchObject({ share: 2, lGlobal: 6, nodes: 3 })
          const { denial, held } = yield* fill(node)
          expect(held.length).toBe(2)
          expect(denial.bindingAxis).toBe("concurrency")
          expect(denial.decision).toMatchObject({ allowed: false, limit: 2, remaining: 0 })
        }
        for (const node of [a, b, c]) yield* Scope.close(node.scope, Exit.void)
      })
  )

  it.effect("a node cut off fences itself before its lease lapses; the others take its share; it recovers", () =>
    Effect.gen(function*() {
      const cut = new Set<string>()
      const coordinator = cuttable(yield* ConcurrencyCoordinator.makeMemory, cut)
      const policy = pool(fleet())
      const nodes = yield* Effect.forEach(["a", "b", "c"], (id) => startNode(id, policy, coordinator))
      const [a, b, c] = nodes as [Node, Node, Node]
      yield* TestClock.adjust(3001) // beats at 0..3000: converged, last grant at 3000
      expect(guardOf(c, 3001).share).toBe(2)
      const before = yield* fill(c)
      expect(before.held.length).toBe(2)
      yield* releaseAll(c, before.held)

      cut.add("c")
      // c's last grant (at 3000) renewed its lease to 5000; it fences at 5000 − 500 = 4500.
      yield* TestClock.adjust(999) // 4000: the heartbeat failed → fail-closed share 0
      expect(guardOf(c, 4000)).toMatchObject({ share: 0, fenced: false })
      yield* TestClock.adjust(500) // 4500
      expect(guardOf(c, 4500).fenced).toBe(true)
      const fenced = yield* c.limiter.leases.acquire("pool", "k")
      expect(fenced.held).toBe(false)
      expect(fenced.bindingAxis).toBe("concurrency")
      expect(fenced.decision.limit).toBe(0)

      // The coordinator drops c at the first heartbeat after 5000; a and b then split 6.
      yield* TestClock.adjust(2500) // 7000
      expect(guardOf(a, 7000)).toMatchObject({ share: 3, nodes: 2 })
      expect(guardOf(b, 7000)).toMatchObject({ share: 3, nodes: 2 })
      expect((yield* fill(a)).held.length).toBe(3)

      cut.delete("c")
      yield* TestClock.adjust(1000) // c rejoins: its fence ends at once, its share waits for a to drain
      expect(guardOf(c, 8000)).toMatchObject({ fenced: false, nodes: 3 })
      for (const node of nodes) yield* Scope.close(node.scope, Exit.void)
    }))

  it.effect("local-only serves through an outage against the local ceiling, never fenced", () =>
    Effect.gen(function*() {
      const cut = new Set<string>(["a"])
      const coordinator = cuttable(yield* ConcurrencyCoordinator.makeMemory, cut)
      const a = yield* startNode("a", pool(fleet({ onCoordinatorOutage: "local-only" })), coordinator)
      yield* TestClock.adjust(10_000)
      expect(guardOf(a, 10_000)).toMatchObject({ share: 6, fenced: false })
      expect((yield* fill(a)).held.length).toBe(6)
      yield* Scope.close(a.scope, Exit.void)
    }))

  it.effect("closing a node leaves the fleet at once: the next heartbeat of another takes its share", () =>
    Effect.gen(function*() {
      const coordinator = yield* ConcurrencyCoordinator.makeMemory
      const policy = pool(fleet())
      const a = yield* startNode("a", policy, coordinator)
      const b = yield* startNode("b", policy, coordinator)
      yield* TestClock.adjust(2001)
      expect(guardOf(a, 2001).share).toBe(3)
      yield* Scope.close(b.scope, Exit.void)
      yield* TestClock.adjust(1000)
      expect(guardOf(a, 3001)).toMatchObject({ share: 6, nodes: 1 })
      yield* Scope.close(a.scope, Exit.void)
    }))

  it.effect("a unified admitter's rate denial gives the slot back; foreign lease ids pass through", () =>
    Effect.gen(function*() {
      const coordinator = yield* ConcurrencyCoordinator.makeMemory
      let allow = false
      const rate: FleetAdmission.RateCheck = () =>
        Effect.succeed(fromData({ allowed: allow, limit: 10, remaining: allow ? 9 : 0, resetAt: 0, retryAfterMs: 5 }))
      const a = yield* startNode("a", pool(fleet()), coordinator, rate)
      yield* TestClock.adjust(1)
      const denied = yield* a.limiter.leases.acquire("pool", "k")
      expect(denied.bindingAxis).toBe("rate")
      expect(guardOf(a, 1).inflight).toBe(0)
      allow = true
      const held = yield* a.limiter.leases.acquire("pool", "k")
      expect(held.held).toBe(true)
      expect(held.decision.remaining).toBe(5) // the concurrency axis binds tighter (6 − 1)
      expect(guardOf(a, 1).inflight).toBe(1)
      const beat = yield* a.limiter.leases.heartbeat([held.leaseId, "f".repeat(40)])
      expect(beat.live).toEqual([held.leaseId])
      expect(beat.reclaimed).toEqual(["f".repeat(40)])
      yield* a.limiter.leases.release(held.leaseId, false)
      expect(guardOf(a, 1).inflight).toBe(0)
      yield* Scope.close(a.scope, Exit.void)
    }))
})
