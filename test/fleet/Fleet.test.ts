/**
 * `Fleet.Reserve` end to end: our server (in this process, wired as `serve` wires it, memory store) and
 * the `FleetBackend` client over loopback gRPC. The reference example (limit 5: wants 3 → 3, 5 → 2,
 * 1 → 0 with a retry; the next window refills), domains and the sharing of one budget between Reserve
 * and Check, the error mapping, the auth posture (loopback only without a secret; with one, every caller
 * must present it, as x-fleet-secret or a Bearer token, checked before the policy), and leased limiters
 * shared by many fibers (one Reserve at a time, never more than the budget), and the client's
 * `layerConfig`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Config, ConfigError, Context, Effect, Layer, Redacted } from "effect"
import * as FleetBackend from "../../src/clients/FleetBackend.js"
import type { CoordinatorService } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import { unary } from "../../src/grpc/client.js"
import { Axis, Fleet as FleetRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { Fleet } from "../../src/services/Fleet.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { withConfig } from "../support/config.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { nonLoopbackAddress, startServer } from "./support.js"

const config = `
limiters:
  five:
    strategy: fixedWindow
    limit: 5
    windowMs: ${LONG_WINDOW_MS}
    federated:
      batch: 4
  shortWindow:
    strategy: fixedWindow
    limit: 5
    windowMs: 1000
    federated:
      batch: 2
  big:
    strategy: fixedWindow
    limit: 1000
    windowMs: ${LONG_WINDOW_MS}
    federated:
      batch: 10
  plain:
    strategy: gcra
    limit: 10
    period: 1s
`

const fleetAt = (target: string, secret?: string) =>
  FleetBackend.layer({ target, ...(secret === undefined ? {} : { secret: Redacted.make(secret) }) })

/** The Fleet client for the life of the enclosing scope. */
const fleetIn = (target: string, secret?: string) =>
  Effect.map(Layer.build(fleetAt(target, secret)), Context.get(Fleet))

const withFleet = <A, E>(target: string, use: Effect.Effect<A, E, Fleet>, secret?: string) =>
  Effect.provide(use, fleetAt(target, secret))

/** Sleeps (real time) until just after the next boundary of `windowMs`. */
const nextWindow = (windowMs: number) => Effect.sleep(windowMs - (Date.now() % windowMs) + 20)

describe("Fleet.Reserve", () => {
  it.live("grants 3, then 2, then refuses with a retry; the next window refills", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config })
      yield* withFleet(
        server.target,
        Effect.gen(function*() {
          const fleet = yield* Fleet
          const before = Date.now()
          const first = yield* fleet.reserve("five", { wants: 3 })
          expect(first.capacity).toBe(3)
          expect(first.safeCapacity).toBe(3)
          expect(first.retryAfterMs).toBe(0)
          expect(first.limit).toBe(5)
          expect(first.expiryMs % LONG_WINDOW_MS).toBe(0)
          expect(first.expiryMs).toBeGreaterThan(before)
          expect(first.refreshIntervalMs).toBeGreaterThanOrEqual(1)
          expect(first.refreshIntervalMs).toBeLessThanOrEqual(LONG_WINDOW_MS)
          const second = yield* fleet.reserve("five", { wants: 5 })
          expect(second.capacity).toBe(2)
          const third = yield* fleet.reserve("five", { wants: 1 })
          expect(third.capacity).toBe(0)
          expect(third.refused).toBe(true)
          expect(third.retryAfterMs).toBeGreaterThan(0)
          expect(third.retryAfterMs).toBeLessThanOrEqual(third.expiryMs - before)

          // A short window: exhaust it, then the next window refills.
          yield* nextWindow(1000)
          const all = yield* fleet.reserve("shortWindow", { wants: 5 })
          expect(all.capacity).toBe(5)
          const none = yield* fleet.reserve("shortWindow", { wants: 1 })
          expect(none.capacity).toBe(0)
          expect(none.retryAfterMs).toBeGreaterThan(0)
          yield* Effect.sleep(Math.max(0, none.expiryMs - Date.now()) + 20)
          const refilled = yield* fleet.reserve("shortWindow", { wants: 5 })
          expect(refilled.capacity).toBe(5)
          expect(refilled.expiryMs).toBe(none.expiryMs + 1000)
        })
      )
    })))

  it.live("domains have their own budgets; the empty domain is the policy's, shared with Check", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config })
      const fleet = yield* fleetIn(server.target)
      expect((yield* fleet.reserve("five", { domain: "a", wants: 5 })).capacity).toBe(5)
      expect((yield* fleet.reserve("five", { domain: "b", wants: 5 })).capacity).toBe(5)
      expect((yield* fleet.reserve("five", { wants: 3 })).capacity).toBe(3)
      // Check on the federated policy with key = the policy name draws from the same budget (tier 1).
      const checks = yield* Effect.provide(
        Effect.flatMap(RateLimiter, (limiter) => Effect.forEach([1, 2, 3], () => limiter.check("five", "five"))),
        ServiceBackend.layer({ target: server.target })
      )
      expect(checks.map((d) => d.allowed)).toEqual([true, true, false])
      expect(checks[2]).toMatchObject({ limit: 5, remaining: 0 })
    })))

  it.live("maps errors: not federated → PolicyNotFound, concurrency → unsupported, bad wants → InvalidArgument", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config })
      const fleet = yield* fleetIn(server.target)
      const notFederated = yield* Effect.flip(fleet.reserve("plain"))
      expect(notFederated).toMatchObject({ _tag: "PolicyNotFound", policy: "plain" })
      const unknown = yield* Effect.flip(fleet.reserve("nope"))
      expect(unknown._tag).toBe("PolicyNotFound")
      const concurrency = yield* Effect.flip(fleet.reserve("five", { axis: "concurrency" }))
      expect(concurrency).toMatchObject({ _tag: "OperationNotSupported", operation: "reserve" })
      for (const wants of [0, -2, 1.5]) {
        expect((yield* Effect.flip(fleet.reserve("five", { wants })))._tag).toBe("InvalidArgument")
      }
      // The server refuses a negative wants itself (the reference coerces it to 1) and grants nothing.
      const client = new grpc.Client(server.target, grpc.credentials.createInsecure())
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
      const negative = yield* Effect.flip(
        unary(client, FleetRpc.method.reserve, { policy: "five", wants: -1n, axis: Axis.RATE }, { deadlineMs: 2000 })
      )
      expect(negative.code).toBe(grpc.status.INVALID_ARGUMENT)
      // wants 0 on the wire means 1.
      const one = yield* unary(client, FleetRpc.method.reserve, { policy: "five", caller: { domain: "z" } }, {
        deadlineMs: 2000
      })
      expect(one.lease?.capacity).toBe(1n)
      expect((yield* fleet.reserve("five", { domain: "z", wants: 5 })).capacity).toBe(4)
    })))

  it.live("with a secret, every caller must present it (x-fleet-secret or Bearer), checked before the policy", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config, fleetSecret: "s3cret" })
      const without = yield* Effect.flip(withFleet(server.target, Effect.flatMap(Fleet, (f) => f.reserve("five"))))
      expect(without._tag).toBe("Unauthenticated")
      const wrong = yield* Effect.flip(
        withFleet(server.target, Effect.flatMap(Fleet, (f) => f.reserve("nope")), "guess")
      )
      expect(wrong._tag).toBe("Unauthenticated")
      expect(wrong.message).not.toContain("guess")
      expect(wrong.message).not.toContain("s3cret")
      const right = yield* withFleet(server.target, Effect.flatMap(Fleet, (f) => f.reserve("five")), "s3cret")
      expect(right.capacity).toBe(1)
      const client = new grpc.Client(server.target, grpc.credentials.createInsecure())
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
      const bearer = new grpc.Metadata()
      bearer.set("authorization", "bEaReR s3cret")
      const viaBearer = yield* unary(client, FleetRpc.method.reserve, { policy: "five" }, {
        deadlineMs: 2000,
        metadata: bearer
      })
      expect(viaBearer.lease?.capacity).toBe(1n)
      const badBearer = new grpc.Metadata()
      badBearer.set("authorization", "Bearer s3cret-not")
      const refused = yield* Effect.flip(
        unary(client, FleetRpc.method.reserve, { policy: "five" }, { deadlineMs: 2000, metadata: badBearer })
      )
      expect(refused.code).toBe(grpc.status.UNAUTHENTICATED)
    })))

  it.live("layerConfig reads the target and the secret from Config; a missing value fails with ConfigError", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* startServer({ config, fleetSecret: "s3cret" })
      const fleet = FleetBackend.layerConfig({
        target: Config.string("THROTTLEKIT_TARGET"),
        secret: Config.redacted("THROTTLEKIT_FLEET_SECRET")
      })
      const lease = yield* Effect.provide(
        Effect.flatMap(Fleet, (fleet) => fleet.reserve("five", { domain: "config", wants: 2 })),
        withConfig(fleet, [["THROTTLEKIT_TARGET", server.target], ["THROTTLEKIT_FLEET_SECRET", "s3cret"]])
      )
      expect(lease.capacity).toBe(2)
      const missing = yield* Effect.flip(
        Effect.scoped(Layer.build(withConfig(fleet, [["THROTTLEKIT_TARGET", server.target]])))
      )
      expect(ConfigError.isConfigError(missing)).toBe(true)
      expect(String(missing)).toContain("THROTTLEKIT_FLEET_SECRET")
      expect(String(missing)).not.toContain("s3cret")
    })))

  it.live("without a secret, a non-loopback caller is refused", () =>
    Effect.scoped(Effect.gen(function*() {
      // The server listens on 0.0.0.0; the client reaches it through this machine's non-loopback address,
      // so the server sees a non-loopback peer (how the address was obtained is printed below).
      const remote = yield* nonLoopbackAddress
      console.log(`non-loopback peer via ${remote.address} (${remote.how})`)
      const server = yield* startServer({ config, host: "0.0.0.0" })
      const error = yield* Effect.flip(
        withFleet(`${remote.address}:${server.port}`, Effect.flatMap(Fleet, (f) => f.reserve("five")))
      )
      expect(error._tag).toBe("Unauthenticated")
      // The same server answers a loopback caller.
      expect((yield* withFleet(server.target, Effect.flatMap(Fleet, (f) => f.reserve("five")))).capacity).toBe(1)
    })))

  it.live("a leased limiter shared by many fibers: one Reserve at a time, never more than granted", () =>
    Effect.scoped(Effect.gen(function*() {
      const memory = MemoryCoordinator.make()
      const stats = { calls: 0, inFlight: 0, maxInFlight: 0, granted: 0 }
      const counting: CoordinatorService = {
        store: "counting",
        reserve: (strategy, key, wants) =>
          Effect.acquireUseRelease(
            Effect.sync(() => {
              stats.calls++
              stats.maxInFlight = Math.max(stats.maxInFlight, ++stats.inFlight)
            }),
            () =>
              Effect.zipRight(
                Effect.sleep(3),
                Effect.tap(memory.reserve(strategy, key, wants), (g) => Effect.sync(() => (stats.granted += g.granted)))
              ),
            () => Effect.sync(() => stats.inFlight--)
          )
      }
      const server = yield* startServer({ config, coordinator: counting })
      const fleet = yield* fleetIn(server.target)
      const limiter = yield* fleet.leased("big", { domain: "fibers", batch: 10 })
      const decisions = yield* Effect.all(Array.from({ length: 400 }, () => limiter.check()), {
        concurrency: "unbounded"
      })
      expect(decisions.every((d) => d.allowed)).toBe(true)
      expect(stats.maxInFlight).toBe(1)
      expect(stats.calls).toBe(40)
      expect(stats.granted).toBe(400 + limiter.credits())
      expect(limiter.expiresAt()).toBe(decisions[0]!.resetAt)
      // Past the budget the server's refusal is the answer, and it is not asked again until its retry time.
      const rest = yield* Effect.forEach(Array.from({ length: 620 }), () => limiter.check())
      expect(rest.filter((d) => d.allowed).length).toBe(600)
      const callsAtRefusal = stats.calls
      const denied = rest.filter((d) => !d.allowed)
      expect(denied[0]).toMatchObject({ allowed: false, limit: 1000, remaining: 0 })
      expect(denied[0]!.retryAfterMs).toBeGreaterThan(0)
      yield* limiter.check()
      expect(stats.calls).toBe(callsAtRefusal)
    })))
})
