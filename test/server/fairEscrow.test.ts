/**
 * Fair-escrow and federated policies served by the real server over gRPC on loopback, with a real
 * `redis-server`:
 * - three servers (three `ThrottleKitServer` layers, regions us, eu and ap) on one Redis serving
 *   `federatedFairEscrow` policies: random scenarios, their tenants split between the regions, decide
 *   exactly as the engine's federated replay (one pool for the three), so the whole fleet never admits past
 *   a policy's limit and a tenant asking within its share of its region's guarantee is never denied;
 * - a `fairEscrow` policy is served by Check only (CheckMany, Peek, Forecast and Debit: UNIMPLEMENTED);
 * - a mixed fleet: a `federated:` budget shared by our server and a client that leases from Redis as the
 *   ThrottleKit core's coordinator does (its key `prefix:domain`, its hash `budget` / `expiresAt`, its
 *   ARGV), written here from the core's documented behaviour: both draw from one budget.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as fc from "fast-check"
import { Redis } from "ioredis"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { FairPolicy, Policy } from "../../src/Policy.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import type { RateLimiterService } from "../../src/services/RateLimiter.js"
import { type FairScenario, fairScenario, replayFederated } from "../support/fairEscrow.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { redisServer } from "../support/redisServer.js"

/** One window for a whole scenario: an hour (a run crossing an hour boundary is not judged). */
const HOUR = 3_600_000
const REGIONS = ["us", "eu", "ap"] as const

const serverOn = (url: string, region: string, policies: ReadonlyArray<Policy>) =>
  Effect.map(
    Layer.build(ThrottleKitServer.layer({
      policies,
      store: { kind: "redis", redis: url },
      region,
      host: "127.0.0.1",
      port: 0,
      monitor: false
    })),
    (context) => Context.get(context, ThrottleKitServer.GrpcServer).address
  )

const clientOf = (address: string) => ServiceBackend.make({ target: address, deadline: "5 seconds" })

const adminOf = (url: string) =>
  Effect.acquireRelease(
    Effect.tryPromise(async () => {
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
      client.on("error", () => {})
      await client.connect()
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

describe("fair escrow served over gRPC", () => {
  it.live(
    "three servers in three regions on one Redis decide as the engine's federated replay",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const cases = fc.sample(
          fc.tuple(fairScenario, fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 4, maxLength: 4 })),
          { numRuns: 10, seed: 21 }
        )
        const policyOf = (i: number, scenario: FairScenario, region: string): FairPolicy => ({
          kind: "fair",
          name: `fe${i}`,
          prefix: `fe${i}`,
          maxKeys: 100,
          fairEscrow: { limit: scenario.limit, windowMs: HOUR, weights: scenario.weights },
          federation: { region, key: `fe${i}`, prefix: "tk:rfp" }
        })
        const clients: Record<string, RateLimiterService> = {}
        for (const region of REGIONS) {
          const address = yield* serverOn(redis.url, region, cases.map(([s], i) => policyOf(i, s, region)))
          clients[region] = yield* clientOf(address)
        }
        for (const [i, [scenario, split]] of cases.entries()) {
          const tenants = Object.keys(scenario.weights)
          const regionOf = (tenant: string) => REGIONS[split[tenants.indexOf(tenant)]!]!
          const hourAtStart = Math.floor(Date.now() / HOUR)
          const decisions = []
          for (const op of scenario.ops) {
            decisions.push(yield* clients[regionOf(op.tenant)]!.check(`fe${i}`, op.tenant, op.cost))
          }
          if (Math.floor(Date.now() / HOUR) !== hourAtStart) continue
          const oneWindow = { ...scenario, windowMs: HOUR }
          const expected = replayFederated(oneWindow, regionOf)
          expect(decisions.map(({ allowed, limit, remaining }) => ({ allowed, limit, remaining }))).toEqual(
            expected.map(({ decision: { allowed, limit, remaining } }) => ({ allowed, limit, remaining }))
          )
          for (const step of expected) {
            expect(step.windowTotal).toBeLessThanOrEqual(scenario.limit)
            if (step.joinedAll && step.withinGuarantee) expect(step.decision.allowed).toBe(true)
          }
          const total = decisions.reduce((sum, d, j) => sum + (d.allowed ? scenario.ops[j]!.cost : 0), 0)
          expect(total).toBeLessThanOrEqual(scenario.limit)
        }
      })),
    { timeout: 120_000 }
  )

  it.live(
    "a fairEscrow policy answers Check only; the other operations are UNIMPLEMENTED",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const policies: ReadonlyArray<Policy> = [{
          kind: "fair",
          name: "fair",
          prefix: "fair",
          maxKeys: 100,
          fairEscrow: { limit: 12, windowMs: LONG_WINDOW_MS, weights: { gold: 3 } }
        }]
        const address = yield* Effect.map(
          Layer.build(ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, monitor: false })),
          (context) => Context.get(context, ThrottleKitServer.GrpcServer).address
        )
        const client = yield* clientOf(address)
        // gold's guarantee is floor(3 * 12 / 4) = 9 once silver joined; silver's is 3.
        expect((yield* client.check("fair", "silver")).allowed).toBe(true)
        const gold = yield* client.check("fair", "gold", 8)
        expect(gold).toMatchObject({ allowed: true, limit: 9, remaining: 1 })
        for (
          const error of [
            yield* Effect.flip(client.checkMany("fair", ["gold"])),
            yield* Effect.flip(client.peek("fair", "gold")),
            yield* Effect.flip(client.forecast("fair", "gold")),
            yield* Effect.flip(client.debit("fair", "gold"))
          ]
        ) expect(error._tag).toBe("OperationNotSupported")
      })),
    { timeout: 60_000 }
  )

  it.live(
    "mixed fleet: our server and a core-style coordinator client draw from one federated budget",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const admin = yield* adminOf(redis.url)
        const policies: ReadonlyArray<Policy> = [{
          kind: "limiter",
          name: "global",
          prefix: "global",
          maxKeys: 100,
          strategy: { kind: "fixedWindow", limit: 10, windowMs: HOUR },
          federated: { batch: 2, region: "us", prefix: "tk:fed" }
        }]
        const client = yield* clientOf(yield* serverOn(redis.url, "us", policies))
        // The core's coordinator: one hash at prefix:domain, `budget` left and `expiresAt` (the window's end),
        // leased by one script with ARGV now (0: the Redis clock), tokens, windowMs, budget per window.
        const coreLease = (tokens: number) =>
          Effect.tryPromise(() =>
            admin.eval(CORE_LEASE, 1, "tk:fed:tenant-a", 0, tokens, HOUR, 10) as Promise<[number, number]>
          )
        const hourAtStart = Math.floor(Date.now() / HOUR)
        const [first, expiresAt] = yield* coreLease(3)
        expect(first).toBe(3)
        // Our server leases batches of 2 from what is left: 7 checks pass, the 8th is refused.
        const allowed: Array<boolean> = []
        for (let i = 0; i < 8; i++) allowed.push((yield* client.check("global", "tenant-a")).allowed)
        if (Math.floor(Date.now() / HOUR) !== hourAtStart) return
        expect(allowed).toEqual([true, true, true, true, true, true, true, false])
        expect(yield* coreLease(1)).toEqual([0, expiresAt])
        expect(yield* Effect.tryPromise(() => admin.hgetall("tk:fed:tenant-a"))).toEqual({
          budget: "0",
          expiresAt: String(expiresAt)
        })
        // The old layout's key is gone: nothing else was written.
        expect((yield* Effect.tryPromise(() => admin.keys("*"))).sort()).toEqual(["tk:fed:tenant-a"])
      })),
    { timeout: 60_000 }
  )
})

/**
 * The ThrottleKit core coordinator's lease, as its documentation describes it (written here for the
 * test): the active window's end from `now`; a hash of another window (or none) starts over at the budget;
 * the grant is at most what is left; the hash keeps what is left and the window's end until then.
 */
const CORE_LEASE = `
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local tokens, windowMs, perWindow = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local windowEnd = now - (now % windowMs) + windowMs
local state = redis.call('HGETALL', KEYS[1])
local left, ends = nil, nil
for i = 1, #state, 2 do
  if state[i] == 'budget' then left = tonumber(state[i + 1]) end
  if state[i] == 'expiresAt' then ends = tonumber(state[i + 1]) end
end
if left == nil or ends ~= windowEnd then
  redis.call('DEL', KEYS[1])
  left = perWindow
end
local granted = math.min(tokens, left)
redis.call('HSET', KEYS[1], 'budget', left - granted, 'expiresAt', windowEnd)
redis.call('PEXPIRE', KEYS[1], math.max(1, windowEnd - now))
return { granted, windowEnd }
`
