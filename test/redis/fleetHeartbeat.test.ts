/**
 * The fleet concurrency heartbeat script (`distributedConcurrency.heartbeat`) against the engine
 * (`engine/fleetShare.ts`): the same random report sequences (nodes joining, leases lapsing, every
 * aggregate and allocation, with and without acknowledged handoff), with explicit `now`, through both.
 * Every reply must be identical, and the coordinator hash read back must hold exactly the engine's nodes,
 * in the ThrottleKit core's layout (field = node id, value = "lLocal inflight expiresAt share", three more
 * integers under handoff). Each sequence runs in one MULTI/EXEC, so nothing expires in real time midway.
 * Then the Redis clock (`now` 0), the key's TTL, and `leave`.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import {
  type Aggregate,
  type Allocation,
  applyHeartbeat,
  type FleetNode,
  type FleetReport,
  type FleetRules
} from "../../src/engine/fleetShare.js"
import { prng } from "../support/prng.js"
import { call, type Step, TestRedis, testRedisLayer, transaction } from "./harness.js"

const SEQUENCES = 120
const STEPS = 40

const argvOf = (r: FleetReport, now: number, rules: FleetRules) => ({
  nodeId: r.nodeId,
  lLocal: r.lLocal,
  inflight: r.inflight,
  expiresAt: r.expiresAt,
  now,
  aggregate: rules.aggregate,
  seq: r.seq,
  appliedGen: r.appliedGen,
  handoff: rules.handoff ? "1" : "0",
  allocation: rules.allocation
})

const encode = (n: FleetNode, handoff: boolean): string =>
  [n.lLocal, n.inflight, n.expiresAt, n.share, ...(handoff ? [n.committedGen, n.maxSeq, n.unackedHigh] : [])].join(" ")

layer(testRedisLayer(), { timeout: 120_000 })("distributedConcurrency.heartbeat", (it) => {
  it.effect("answers and stores what the engine does, step for step", () =>
    Effect.gen(function*() {
      const env = yield* TestRedis
      const rng = prng(20260701)
      for (let sequence = 0; sequence < SEQUENCES; sequence++) {
        const rules: FleetRules = {
          aggregate: rng.pick<Aggregate>(["median", "min"]),
          allocation: rng.pick<Allocation>(["equal-split", "demand-proportional"]),
          handoff: rng.int(0, 3) === 0
        }
        const key = `${env.ns}:fed${sequence}conc:p`
        const nodes = new Map<string, FleetNode>()
        const steps: Array<Step> = []
        const expected: Array<ReadonlyArray<number>> = []
        let now = 1_700_000_000_000 + rng.int(0, 1_000_000)
        for (let i = 0; i < STEPS; i++) {
          now += rng.int(0, 1200)
          const report: FleetReport = {
            nodeId: rng.pick(["a", "b", "c", "node-10", "node-9"]),
            lLocal: rng.int(1, 40),
            inflight: rng.int(0, 40),
            expiresAt: now + rng.int(0, 3000),
            seq: rng.int(-1, 10),
            appliedGen: rng.int(-1, 10)
          }
          const grant = applyHeartbeat(nodes, report, now, rules)
          expected.push([grant.share, grant.lGlobal, grant.nodes, grant.gen])
          steps.push(yield* call(env, "distributedConcurrency.heartbeat", { key }, argvOf(report, now, rules)))
        }
        steps.push(yield* call(env, "distributedConcurrency.read", { key }, {}))
        steps.push({ command: "DEL", args: [key] })
        const replies = yield* transaction(env, steps)
        expect(replies.slice(0, STEPS), `sequence ${sequence} ${JSON.stringify(rules)}`).toEqual(expected)
        const flat = replies[STEPS] as ReadonlyArray<string>
        const stored = new Map<string, string>()
        for (let i = 0; i < flat.length; i += 2) stored.set(flat[i]!, flat[i + 1]!)
        const fromEngine = new Map([...nodes].map(([id, n]) => [id, encode(n, rules.handoff)]))
        expect(Object.fromEntries(stored), `sequence ${sequence}`).toEqual(Object.fromEntries(fromEngine))
      }
    }))

  it.effect("reads the Redis clock for now = 0, expires the key with its last node, and lets a node leave", () =>
    Effect.gen(function*() {
      const env = yield* TestRedis
      const key = `${env.ns}:tk:fedconc:clock`
      const rules: FleetRules = { aggregate: "median", allocation: "equal-split", handoff: false }
      const far = Date.now() + 60_000
      const beat = (nodeId: string, expiresAt: number) =>
        Effect.flatMap(
          call(
            env,
            "distributedConcurrency.heartbeat",
            { key },
            argvOf(
              {
                nodeId,
                lLocal: 6,
                inflight: 0,
                expiresAt,
                seq: -1,
                appliedGen: -1
              },
              0,
              rules
            )
          ),
          (c) => env.runner.run(c)
        )
      expect(yield* beat("a", far)).toEqual([6, 6, 1, 0])
      expect(yield* beat("b", far)).toEqual([0, 6, 2, 0])
      // A node whose lease lapsed by the Redis clock is dropped by the next heartbeat of another.
      expect(yield* beat("c", Date.now() - 5_000)).toEqual([0, 6, 3, 0])
      expect(yield* beat("a", far)).toEqual([3, 6, 2, 0])
      const ttl = yield* Effect.promise(() => env.client.pttl(key))
      expect(ttl).toBeGreaterThan(50_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
      expect(yield* Effect.promise(() => env.client.hget(key, "a"))).toBe(`6 0 ${far} 3`)
      const leave = yield* call(env, "distributedConcurrency.leave", { key }, { nodeId: "b" })
      expect(yield* env.runner.run(leave)).toBe(1)
      expect(yield* env.runner.run(leave)).toBe(0)
      expect(yield* beat("a", far)).toEqual([6, 6, 1, 0])
      yield* Effect.promise(() => env.client.del(key))
    }))
})
