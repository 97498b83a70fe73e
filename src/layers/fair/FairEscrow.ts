/**
 * Fair-escrow policies on a local store (Memory or Redis): the check of a `fairEscrow` or
 * `federatedFairEscrow` policy, computed in this process by the engine (`engine/fairEscrow.ts`) with
 * time from Effect's `Clock`. As on the ThrottleKit core and its server, a fair escrow's tenants live in
 * the serving process (one escrow per process, per policy); a federated one asks a region pool for its
 * share of the one budget, which lives where the pool lives (in Redis on the Redis door, so every server
 * of every region draws from it; in this process on the Memory door).
 *
 * @since 0.3.0
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { type Decision, fromData } from "../../Decision.js"
import { Escrow, MAX_GRANTS_PER_CHECK, RegionPool as PoolEngine } from "../../engine/fairEscrow.js"
import type { RateLimiterError } from "../../Errors.js"
import type { FairPolicy } from "../../Policy.js"
import type { BoundFair } from "../../services/RateLimiterStore.js"

/**
 * A region pool as a store offers it: grants `region` (of total tenant weight `weight`) up to `wantTotal`
 * units of the current window in all, answering its total grant (which never shrinks in a window). `now`
 * is the checking fiber's clock reading (a Redis pool reads its own clock unless told otherwise).
 *
 * @since 0.3.0
 * @category models
 */
export interface RegionPool {
  readonly grant: (
    region: string,
    weight: number,
    wantTotal: number,
    now: number
  ) => Effect.Effect<number, RateLimiterError>
}

/**
 * A region pool in this process (the core's `regionFairPool`): every region of one process shares it.
 *
 * @since 0.3.0
 * @category constructors
 */
export const memoryPool = (limit: number, windowMs: number): RegionPool => {
  const pool = new PoolEngine(limit, windowMs)
  return { grant: (region, weight, wantTotal, now) => Effect.sync(() => pool.grant(region, weight, wantTotal, now)) }
}

/** A tenant's weight under `policy`: its configured one, else 1. */
const weigher = (policy: FairPolicy): (tenant: string) => number => {
  const weights = new Map(Object.entries(policy.fairEscrow.weights))
  return (tenant) => weights.get(tenant) ?? 1
}

const escrowOf = (policy: FairPolicy, local: boolean): Escrow =>
  new Escrow({
    limit: policy.fairEscrow.limit,
    windowMs: policy.fairEscrow.windowMs,
    maxKeys: policy.maxKeys,
    local
  })

/**
 * The check of a `fairEscrow` policy: the whole `limit` split in this process.
 *
 * @since 0.3.0
 * @category constructors
 */
export const local = (policy: FairPolicy): BoundFair => {
  const escrow = escrowOf(policy, true)
  const weightOf = weigher(policy)
  return {
    check: (tenant, cost) =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        escrow.roll(now)
        return Effect.succeed(fromData(escrow.decide(escrow.enter(tenant, weightOf(tenant)), cost, now)))
      })
  }
}

/**
 * The check of a `federatedFairEscrow` policy in region `region`: before deciding, the region grows its
 * budget from `pool` until the check would be allowed or the pool grants no more (at most
 * `MAX_GRANTS_PER_CHECK` grants; see `Escrow.ask` for what it asks), and tells the pool its weight
 * whenever that moved. Checks of one policy run one at a time (a grant is a round trip, and the region's
 * budget and tenants must not move under it), as the core serialises them.
 *
 * @since 0.3.0
 * @category constructors
 */
export const federated = (policy: FairPolicy, region: string, pool: RegionPool): BoundFair => {
  const escrow = escrowOf(policy, false)
  const weightOf = weigher(policy)
  const oneAtATime = Effect.unsafeMakeSemaphore(1)
  const check = Effect.fn("FairEscrow.federatedCheck")(
    function*(tenant: string, cost: number): Effect.fn.Return<Decision, RateLimiterError> {
      const now = yield* Clock.currentTimeMillis
      escrow.roll(now)
      const entry = escrow.enter(tenant, weightOf(tenant))
      for (let grants = 0; grants < MAX_GRANTS_PER_CHECK; grants++) {
        const ask = escrow.ask(entry, cost)
        if (ask === undefined) break
        if (!escrow.granted(ask, yield* pool.grant(region, ask.weight, ask.wantTotal, now))) break
      }
      return fromData(escrow.decide(entry, cost, now))
    }
  )
  return { check: (tenant, cost) => oneAtATime.withPermits(1)(check(tenant, cost)) }
}
