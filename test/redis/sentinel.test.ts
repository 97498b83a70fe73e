/**
 * The Redis door on a Sentinel-managed primary (one primary, one replica, three sentinels), connected as
 * `{ sentinels, name }`:
 * - the shared conformance suite passes on it;
 * - a failover: the primary is SIGKILLed while calls (check, checkMany, peek, lease acquire) keep coming.
 *   Every call made meanwhile ends within the bound, answered or with `ServiceUnavailable`, never hangs;
 *   once the sentinels have promoted the replica, the same backend (not rebuilt, not restarted) answers
 *   again within a few seconds, every kind of call. The failover and recovery times are printed.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import type { RateLimiterError } from "../../src/Errors.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import { conformancePolicies, conformanceSuite } from "../support/conformance.js"
import { RedisSentinel, type RedisSentinelHandle } from "../support/redisSentinel.js"
import { expectBounded, poolAdmitter, type Timed, timed, windowLimiter } from "./topology.js"

/** The bound on every Redis call of the failover test. */
const TIMEOUT_MS = 1000
/** How long the backend may take to answer again once the sentinels agree on the new primary. */
const RECOVERY_BOUND_MS = 10_000

const policies: ReadonlyArray<Policy> = [windowLimiter("fo", "fo", 1_000_000), poolAdmitter("fo-pool", "fo-pool", 1000)]

const connectionOf = (sentinel: RedisSentinelHandle) => ({ sentinels: sentinel.sentinels, name: sentinel.name })

const conformanceBackend = Layer.unwrapEffect(
  Effect.map(
    RedisSentinel,
    (sentinel) => RedisBackend.layer({ policies: conformancePolicies, redis: connectionOf(sentinel) })
  )
)

layer(RedisSentinel.layer, { timeout: 90_000, excludeTestServices: true })(
  "Redis door on a Sentinel-managed primary",
  (it) => {
    conformanceSuite(
      "redis sentinel (server clock)",
      (tests) => it.layer(conformanceBackend, { timeout: 30_000 })(tests)
    )

    it.effect(
      "a failover: calls end within the bound meanwhile, then the same backend answers again",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const sentinel = yield* RedisSentinel
          const limiter = yield* RedisBackend.make({ policies, redis: connectionOf(sentinel), timeoutMs: TIMEOUT_MS })
          const calls: ReadonlyArray<(i: number) => Effect.Effect<unknown, RateLimiterError>> = [
            (i) => limiter.check("fo", `k${i}`),
            (i) => limiter.checkMany("fo", [`a${i}`, `b${i}`]),
            (i) => limiter.peek("fo", `k${i}`),
            (i) => limiter.leases.acquire("fo-pool", `p${i}`)
          ]
          const call = (i: number) => timed(calls[i % calls.length]!(i))
          expect((yield* limiter.check("fo", "before")).allowed).toBe(true)

          const deadPort = yield* Effect.promise(() => sentinel.killPrimary())
          const killedAt = performance.now()
          const failover = yield* Effect.fork(Effect.promise(() => sentinel.awaitFailover(30_000)))
          const during: Array<Timed<unknown>> = []
          while (Option.isNone(yield* Fiber.poll(failover))) {
            during.push(yield* call(during.length))
            yield* Effect.sleep(50)
          }
          const promoted = yield* Fiber.join(failover)
          const failedOverAt = performance.now()
          expect(promoted.deadPort).toBe(deadPort)

          // The same backend, polled until a check answers again.
          const after: Array<Timed<unknown>> = []
          for (;;) {
            const polled = yield* timed(limiter.check("fo", `after${after.length}`))
            after.push(polled)
            if (Option.isSome(Option.flatMap(polled.outcome, Option.getRight))) break
            expect(performance.now() - failedOverAt, "no answer after the failover").toBeLessThan(RECOVERY_BOUND_MS)
            yield* Effect.sleep(100)
          }
          const recoveredAt = performance.now()

          const failed = during.filter((each, i) =>
            Option.isNone(expectBounded(each, TIMEOUT_MS, `call ${i} during the failover`))
          )
          after.forEach((each, i) => expectBounded(each, TIMEOUT_MS, `poll ${i} after the failover`))
          // The outage was seen: calls were made while no primary answered.
          expect(failed.length).toBeGreaterThan(0)
          // Every kind of call answers again, on the new primary.
          for (let i = 0; i < calls.length; i++) {
            expect(Option.isSome(expectBounded(yield* call(10_000 + i), TIMEOUT_MS, `call kind ${i} after`))).toBe(true)
          }
          expect(yield* Effect.promise(() => sentinel.primaryPort())).toBe(promoted.newPrimaryPort)
          const max = Math.round(Math.max(...during.map((each) => each.ms)))
          console.log(
            `[sentinel] failover ${promoted.elapsedMs} ms after SIGKILL; ${during.length} calls meanwhile ` +
              `(${failed.length} ServiceUnavailable, slowest ${max} ms, bound ${TIMEOUT_MS} ms); the same backend ` +
              `answered ${Math.round(recoveredAt - failedOverAt)} ms after the failover ` +
              `(${Math.round(recoveredAt - killedAt)} ms after the kill, ${after.length} polls)`
          )
        })),
      90_000
    )
  }
)
