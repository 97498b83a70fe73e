/**
 * The Service door's checks, coalesced under load. While fewer than `maxInFlight` check RPCs are in
 * flight, a check is sent at once as its own `Check`, as without coalescing. Once that many are, the next
 * checks for the same policy and cost gather into one batch (at most `maxKeys` keys), which leaves as one
 * `CheckMany` as soon as an RPC completes (or at once when full). A server answers a `CheckMany` in key
 * order at one instant, so every check still gets its own decision and is counted once; under load a
 * caller pays one RPC per batch instead of one per check, which on grpc-js is most of a check's cost.
 * Light traffic never waits; a batch waits at most for the first of the RPCs in flight to end, and each
 * of those is bounded by its deadline.
 *
 * - A batch that fails fails each of its checks with the error one `Check` would have got (operation
 *   "check"). `UNIMPLEMENTED` (a policy kind whose server has no `CheckMany`, such as the reference
 *   server's fair limiters) and `INVALID_ARGUMENT` mean nothing ran, so its checks are re-sent one by
 *   one; after `UNIMPLEMENTED` the policy is never batched again.
 * - A check sent on its own is cancelled on the wire when its fiber is interrupted; a check that joined
 *   a batch is not (its batch still runs for the others), and its answer is dropped.
 *
 * @since 0.1.0
 */
import * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import type { Decision } from "../Decision.js"
import type { RateLimiterError } from "../Errors.js"
import { type CallOptions, sendUnary } from "./client.js"
import { decisionFromWire } from "./convert.js"
import { type CheckManyRequest, type CheckRequest, RateLimiter as RateLimiterRpc } from "./generated/throttlekit_pb.js"
import type { GrpcStatusError } from "./status.js"

/**
 * What coalescing needs from the door.
 *
 * @since 0.1.0
 * @category models
 */
export interface CoalescedChecksOptions {
  readonly client: grpc.Client
  readonly callOptions: CallOptions
  /** The backend's name in protocol errors. */
  readonly backend: string
  /** The typed error of a failed `Check` on `policy`. */
  readonly toError: (error: GrpcStatusError, policy: string) => RateLimiterError
  /** The most keys one `CheckMany` carries (default `MAX_KEYS_PER_BATCH`). */
  readonly maxKeys?: number
  /** How many check RPCs may be in flight before checks gather into batches (default `MAX_IN_FLIGHT`). */
  readonly maxInFlight?: number
}

/**
 * The default number of keys per `CheckMany`: enough that a burst costs a few RPCs, few enough that
 * the server starts on one batch while the client still fills the next.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_KEYS_PER_BATCH = 16

/**
 * The default number of check RPCs in flight before checks gather into batches.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_IN_FLIGHT = 8

/** A check's continuation, as `Effect.async` hands it over. */
type Resume = (effect: Effect.Effect<Decision, RateLimiterError>) => void

/** The checks waiting to leave together for one policy and cost. */
class Batch {
  readonly keys: Array<string> = []
  readonly waiters: Array<Resume> = []
  constructor(readonly policy: string, readonly cost: number) {}
}

/**
 * A `CheckRequest` as a literal (with its `$typeName`, as `create` would build it, without `create`'s
 * cost on a hot path).
 *
 * @since 0.1.0
 * @category constructors
 */
export const checkRequest = (policy: string, key: string, cost: number): CheckRequest => ({
  $typeName: "throttlekit.v1.CheckRequest",
  policy,
  key,
  cost: cost === 1 ? 1n : BigInt(cost)
})

const checkMethod = RateLimiterRpc.method.check
const checkManyMethod = RateLimiterRpc.method.checkMany

/**
 * Builds the coalesced check over `options.client`. Arguments are validated by the caller.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: CoalescedChecksOptions) => {
  const { backend, callOptions, client, toError } = options
  const maxKeys = Math.max(1, options.maxKeys ?? MAX_KEYS_PER_BATCH)
  const maxInFlight = Math.max(1, options.maxInFlight ?? MAX_IN_FLIGHT)
  /** Open batches by `cost:policy`, oldest first (a Map keeps insertion order). */
  const open = new Map<string, Batch>()
  const unbatchable = new Set<string>()
  let inFlight = 0

  /** An RPC ended: the oldest open batches leave while there is room. */
  const ended = (): void => {
    inFlight--
    if (open.size === 0) return
    for (const [id, batch] of open) {
      if (inFlight >= maxInFlight) return
      open.delete(id)
      send(batch)
    }
  }

  /** One `Check`; returns the call, to cancel it. */
  const sendOne = (policy: string, key: string, cost: number, resume: Resume) => {
    inFlight++
    return sendUnary(
      client,
      checkMethod,
      checkRequest(policy, key, cost),
      callOptions,
      (response) => {
        ended()
        resume(decisionFromWire(response.decision, backend))
      },
      (error) => {
        ended()
        resume(Effect.fail(toError(error, policy)))
      }
    )
  }

  const send = (batch: Batch): void => {
    const { cost, keys, policy, waiters } = batch
    if (keys.length === 1) {
      sendOne(policy, keys[0]!, cost, waiters[0]!)
      return
    }
    const request: CheckManyRequest = {
      $typeName: "throttlekit.v1.CheckManyRequest",
      policy,
      keys,
      cost: cost === 1 ? 1n : BigInt(cost)
    }
    inFlight++
    sendUnary(
      client,
      checkManyMethod,
      request,
      callOptions,
      (response) => {
        ended()
        const decisions = response.decisions
        for (let i = 0; i < waiters.length; i++) {
          // A short answer leaves the missing decisions undefined: a protocol error for those checks.
          waiters[i]!(decisionFromWire(decisions.length === keys.length ? decisions[i] : undefined, backend))
        }
      },
      (error) => {
        ended()
        if (error.code === grpc.status.UNIMPLEMENTED || error.code === grpc.status.INVALID_ARGUMENT) {
          if (error.code === grpc.status.UNIMPLEMENTED) unbatchable.add(policy)
          for (let i = 0; i < waiters.length; i++) sendOne(policy, keys[i]!, cost, waiters[i]!)
          return
        }
        const failure = Effect.fail(toError(error, policy))
        for (const waiter of waiters) waiter(failure)
      }
    )
  }

  /** Adds a check to its policy and cost's open batch; a full batch leaves at once. */
  const join = (policy: string, key: string, cost: number, resume: Resume): void => {
    const id = `${cost}:${policy}`
    let batch = open.get(id)
    if (batch === undefined) {
      batch = new Batch(policy, cost)
      open.set(id, batch)
    }
    batch.keys.push(key)
    batch.waiters.push(resume)
    if (batch.keys.length >= maxKeys) {
      open.delete(id)
      send(batch)
    }
  }

  return {
    /**
     * Runs one check of valid arguments: on its own while there is room in flight, else in a batch. One
     * `Effect.async` picks the way when it runs: a check sent on its own returns its canceler (so an
     * interrupted fiber cancels it on the wire); a check that joins a batch returns none.
     */
    check: (policy: string, key: string, cost: number): Effect.Effect<Decision, RateLimiterError> =>
      Effect.async<Decision, RateLimiterError>((resume) => {
        if (inFlight < maxInFlight || unbatchable.has(policy)) {
          const call = sendOne(policy, key, cost, resume)
          return call === undefined ? undefined : Effect.sync(() => call.cancel())
        }
        join(policy, key, cost, resume)
      })
  }
}
