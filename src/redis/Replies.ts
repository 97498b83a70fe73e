/**
 * Decoding script replies into the domain's plain data. A reply of the wrong shape (a script and the code
 * out of step) is a `BackendError`, never a defect.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Decision from "../Decision.js"
import type { ForecastData } from "../engine/types.js"
import { BackendError } from "../Errors.js"
import type { Reply } from "./ScriptRunner.js"

const malformed = (what: string, reply: Reply) =>
  new BackendError({ backend: "redis", code: "REPLY", detail: `malformed ${what} reply: ${JSON.stringify(reply)}` })

const integers = (reply: Reply, from: number, count: number): Array<number> | undefined => {
  if (!Array.isArray(reply) || reply.length < from + count) return undefined
  const out: Array<number> = []
  for (let i = from; i < from + count; i++) {
    const value: Reply = reply[i]
    if (typeof value !== "number") return undefined
    out.push(value)
  }
  return out
}

/**
 * The five integers `[allowed, limit, remaining, resetAt, retryAfterMs]` at the head of a reply, as a
 * `Decision` (no intermediate array, one Effect: the Redis door's hot path).
 *
 * @since 0.1.0
 * @category decoders
 */
export const decisionOf = (reply: Reply): Effect.Effect<Decision.Decision, BackendError> => {
  if (!Array.isArray(reply) || reply.length < 5) return Effect.fail(malformed("decision", reply))
  const [allowed, limit, remaining, resetAt, retryAfterMs] = reply as ReadonlyArray<Reply>
  return typeof allowed === "number" && typeof limit === "number" && typeof remaining === "number" &&
      typeof resetAt === "number" && typeof retryAfterMs === "number"
    ? Effect.succeed(Decision.decisionOf(allowed === 1, limit, remaining, resetAt, retryAfterMs))
    : Effect.fail(malformed("decision", reply))
}

/**
 * A batch's replies, each the head of a decision (as `decisionOf` reads one), as decisions in order: one
 * Effect for the whole batch, a plain loop inside. The first malformed reply fails the batch.
 *
 * @since 0.3.0
 * @category decoders
 */
export const decisionsOf = (replies: ReadonlyArray<Reply>): Effect.Effect<Array<Decision.Decision>, BackendError> => {
  const decisions = new Array<Decision.Decision>(replies.length)
  for (let i = 0; i < replies.length; i++) {
    const reply = replies[i]!
    if (!Array.isArray(reply) || reply.length < 5) return Effect.fail(malformed("decision", reply))
    const [allowed, limit, remaining, resetAt, retryAfterMs] = reply as ReadonlyArray<Reply>
    if (
      typeof allowed !== "number" || typeof limit !== "number" || typeof remaining !== "number" ||
      typeof resetAt !== "number" || typeof retryAfterMs !== "number"
    ) return Effect.fail(malformed("decision", reply))
    decisions[i] = Decision.decisionOf(allowed === 1, limit, remaining, resetAt, retryAfterMs)
  }
  return Effect.succeed(decisions)
}

/**
 * The reply of a script that decides several keys in one run (`multi.check`, `many.check`): five integers
 * per key, `count` keys, as `Decision`s in order; or the `BackendError` of a malformed reply. Plain (no
 * Effect), for callers that settle many fibers from one reply.
 *
 * @since 0.3.0
 * @category decoders
 */
export const decisionsIn = (
  reply: Reply,
  count: number,
  script: string
): ReadonlyArray<Decision.Decision> | BackendError => {
  if (Array.isArray(reply) && reply.length === 2 && reply[0] === -3) {
    return new BackendError({
      backend: "redis",
      code: "REPLY",
      detail: `${script}: check ${String(reply[1])} names a kind the script does not know`
    })
  }
  if (!Array.isArray(reply) || reply.length !== 5 * count) return malformed(script, reply)
  const decisions = new Array<Decision.Decision>(count)
  for (let i = 0, at = 0; i < count; i++, at += 5) {
    const allowed: Reply = reply[at]
    const limit: Reply = reply[at + 1]
    const remaining: Reply = reply[at + 2]
    const resetAt: Reply = reply[at + 3]
    const retryAfterMs: Reply = reply[at + 4]
    if (
      typeof allowed !== "number" || typeof limit !== "number" || typeof remaining !== "number" ||
      typeof resetAt !== "number" || typeof retryAfterMs !== "number"
    ) return malformed(script, reply)
    decisions[i] = Decision.decisionOf(allowed === 1, limit, remaining, resetAt, retryAfterMs)
  }
  return decisions
}

/**
 * A multi-check's reply (`multi.check`): five integers per dimension, `count` dimensions, as `Decision`s
 * in order.
 *
 * @since 0.3.0
 * @category decoders
 */
export const multiDecisionsOf = (
  reply: Reply,
  count: number
): Effect.Effect<ReadonlyArray<Decision.Decision>, BackendError> => {
  const decisions = decisionsIn(reply, count, "multi.check")
  return decisions instanceof BackendError ? Effect.fail(decisions) : Effect.succeed(decisions)
}

/**
 * `[spendableNow, nextReplenishAt, fullAt]`.
 *
 * @since 0.1.0
 * @category decoders
 */
export const forecast = (reply: Reply): Effect.Effect<ForecastData, BackendError> => {
  const n = integers(reply, 0, 3)
  if (n === undefined) return Effect.fail(malformed("forecast", reply))
  return Effect.succeed({ spendableNow: n[0]!, nextReplenishAt: n[1]!, fullAt: n[2]! })
}

/**
 * An admission script's answer.
 *
 * @since 0.1.0
 * @category models
 */
export type AdmitReply =
  | { readonly _tag: "Collision" }
  | {
    readonly _tag: "Decided"
    readonly decision: Decision.DecisionData
    readonly bindingAxis: "" | "rate" | "concurrency"
    readonly leaseExpiresAt: number
    readonly reclaimed: ReadonlyArray<string>
  }

const strings = (reply: Reply | undefined): Array<string> | undefined => {
  if (!Array.isArray(reply)) return undefined
  const out: Array<string> = []
  for (const value of reply as ReadonlyArray<Reply>) {
    if (typeof value !== "string") return undefined
    out.push(value)
  }
  return out
}

/**
 * `[allowed, limit, remaining, resetAt, retryAfterMs, bindingAxis, leaseExpiresAt, reclaimedIds]`, or
 * `[-1]` when the lease id was already held.
 *
 * @since 0.1.0
 * @category decoders
 */
export const admission = (reply: Reply): Effect.Effect<AdmitReply, BackendError> => {
  if (Array.isArray(reply) && reply.length === 1 && reply[0] === -1) return Effect.succeed({ _tag: "Collision" })
  const n = integers(reply, 0, 5)
  const tail = Array.isArray(reply) ? reply as ReadonlyArray<Reply> : []
  const axis = tail[5]
  const expiresAt = tail[6]
  const reclaimed = strings(tail[7])
  if (
    n === undefined || (axis !== "" && axis !== "rate" && axis !== "concurrency") || typeof expiresAt !== "number" ||
    reclaimed === undefined
  ) {
    return Effect.fail(malformed("admission", reply))
  }
  return Effect.succeed({
    _tag: "Decided",
    decision: { allowed: n[0] === 1, limit: n[1]!, remaining: n[2]!, resetAt: n[3]!, retryAfterMs: n[4]! },
    bindingAxis: axis,
    leaseExpiresAt: expiresAt,
    reclaimed
  })
}

/**
 * A heartbeat's `[liveIds, reclaimedIds, nextDeadline]`.
 *
 * @since 0.1.0
 * @category decoders
 */
export const renewal = (
  reply: Reply
): Effect.Effect<
  { readonly live: ReadonlyArray<string>; readonly reclaimed: ReadonlyArray<string>; readonly nextDeadline: number },
  BackendError
> => {
  const parts = Array.isArray(reply) ? reply as ReadonlyArray<Reply> : []
  const live = strings(parts[0])
  const reclaimed = strings(parts[1])
  const nextDeadline = parts[2]
  if (live === undefined || reclaimed === undefined || typeof nextDeadline !== "number") {
    return Effect.fail(malformed("renew", reply))
  }
  return Effect.succeed({ live, reclaimed, nextDeadline })
}
