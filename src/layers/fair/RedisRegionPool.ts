/**
 * The region pool of a `federatedFairEscrow` policy in Redis: one hash at `prefix:key` shared by every
 * server of every region, granted through the `regionFairPool.grant` script (the ThrottleKit core's region
 * pool wire: same key, ARGV and state, so a core server and this one draw from one pool). Time is the
 * Redis clock unless the store was told to pass Effect's.
 *
 * @since 0.3.0
 * @internal
 */
import * as Effect from "effect/Effect"
import { BackendError, type InvalidArgument } from "../../Errors.js"
import { evalArgs, type Reply, type ScriptRunner } from "../../redis/ScriptRunner.js"
import type { Script } from "../../redis/Scripts.js"
import type { RegionPool } from "./FairEscrow.js"

/**
 * Decodes a grant script's reply: the region's total grant, a whole number ≥ 0.
 *
 * @since 0.3.0
 * @category decoding
 */
export const grantedOf = (reply: Reply): Effect.Effect<number, BackendError> =>
  typeof reply === "number" && Number.isSafeInteger(reply) && reply >= 0
    ? Effect.succeed(reply)
    : Effect.fail(
      new BackendError({ backend: "redis", code: "REPLY", detail: `malformed pool grant: ${JSON.stringify(reply)}` })
    )

/**
 * The pool at `key` (the deployment prefix included) of `limit` units per `windowMs`, granted by `grant`
 * (the `regionFairPool.grant` script) on `runner`; `now` is the ARGV `now` (0: the Redis clock).
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: {
  readonly runner: ScriptRunner
  readonly grant: Script
  readonly key: string
  readonly limit: number
  readonly windowMs: number
  readonly now: Effect.Effect<number, InvalidArgument>
}): RegionPool => {
  const { grant, key, limit, now, runner, windowMs } = options
  return {
    grant: (region, weight, wantTotal) =>
      Effect.flatMap(now, (at) =>
        Effect.flatMap(
          runner.prepare(grant, { pool: key }, { now: at, windowMs, limit, region, weight, wantTotal }),
          (call) => runner.runDecoded(call.script, evalArgs(call), grantedOf)
        ))
  }
}
