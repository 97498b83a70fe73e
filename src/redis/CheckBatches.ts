/**
 * Checks of one policy (a limiter's checks, or a token budget's debits) decided many to a script run
 * (`many.check`): the Redis door's coalescing of concurrent checks and debits, and its `checkMany`.
 *
 * Redis spends about as much on starting a script (parsing the command, calling into Lua, `TIME`) as on a
 * small check's own reads and writes, and Node spends as much on each command's encoding, promise and
 * reply. So checks that are in flight together are sent together:
 *
 * - A check joins its tick's batch. The tick ends when Node's microtask queue drains, so the fibers that
 *   one socket read resumed all run in it. A batch leaves as soon as it holds `BATCH_SIZE` checks (Redis
 *   starts on it while the next one fills), or at the tick's end.
 * - A batch of one is sent as the policy's own single-key script: a serial caller sends exactly what it
 *   did without coalescing. Two or more go as one `many.check`. That script gives each key, in arrival
 *   order, exactly its single-key script's check, at one instant. A key named twice sees its first
 *   check's write, as two single scripts sent back to back would.
 * - On a cluster a script can only touch one slot, so checks are batched per slot.
 * - A batch is one call to the runner: one bound, one fence. If it fails or is fenced out, every check in
 *   it fails with that error and none of them applied.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import type * as Decision from "../Decision.js"
import { BackendError } from "../Errors.js"
import type { CallTemplate } from "./CallTemplate.js"
import * as Replies from "./Replies.js"
import {
  type BatchCall,
  batchCall,
  type EvalArgs,
  type RedisFailure,
  type Reply,
  type ScriptRunner
} from "./ScriptRunner.js"
import type { Script } from "./Scripts.js"
import { blockKeyOf, slotOf } from "./Slots.js"

/**
 * A policy's fixed part of a `many.check` ARGV: its kind (the strategy whose check it runs) and the six
 * parameters of its single-key script, in that script's ARGV order, padded with "0".
 *
 * @since 0.3.0
 * @category models
 */
export interface ManyPart {
  readonly kind: string
  readonly params: ReadonlyArray<string>
}

/**
 * At most this many coalesced checks share one script run. Redis starts on a full batch while the tick's
 * next one fills (it leaves in a write of its own). Measured with the bench's 64 callers on 2 vCPUs
 * (`--only redis`, redis.c64): 32 gave 70.5k checks/s (1.39x rate-limiter-flexible), 16 gave 61–67k
 * (1.18–1.32x), 8 gave 56k (0.95x): fewer, larger runs cost Redis less per check.
 */
export const BATCH_SIZE = 32

/** At most this many keys of a `checkMany` share one script run, so one run never holds Redis for long. */
const MANY_CHUNK = 128

/**
 * The `many.check` arguments (numkeys, KEYS, ARGV) deciding `keys` (full state keys) with `costOf(i)` at
 * `now` (0: the Redis clock). The fence's place holds 0 (the runner writes it). When every key spends the
 * same cost, it is sent once.
 *
 * @since 0.3.0
 * @category constructors
 */
export const manyArgs = (
  part: ManyPart,
  keys: ReadonlyArray<string>,
  costOf: (i: number) => number,
  now: number
): EvalArgs => {
  const n = keys.length
  const args: EvalArgs = [2 * n]
  for (let i = 0; i < n; i++) args.push(keys[i]!)
  for (let i = 0; i < n; i++) args.push(blockKeyOf(keys[i]!))
  args.push(now, part.kind)
  for (const param of part.params) args.push(param)
  args.push(0)
  const first = costOf(0)
  let shared = true
  for (let i = 1; i < n && shared; i++) shared = costOf(i) === first
  if (shared) args.push(first)
  else for (let i = 0; i < n; i++) args.push(costOf(i))
  return args
}

/** Where a coalesced check's outcome goes: its fiber's resumption. */
type Resume = (effect: Effect.Effect<Decision.Decision, RedisFailure>) => void

/** The checks of one batch, in arrival order. */
class Batch {
  readonly keys: Array<string> = []
  readonly costs: Array<number> = []
  readonly resumes: Array<Resume> = []
}

/**
 * What a coalescer needs: the runner, the policy's single-key call (on the Redis clock), `many.check` and
 * the policy's part of its ARGV, and whether the connection is a cluster (batches per slot).
 *
 * @since 0.3.0
 * @category models
 */
export interface CoalescerOptions {
  readonly runner: ScriptRunner
  readonly single: CallTemplate
  readonly many: Script
  readonly part: ManyPart
  readonly cluster: boolean
}

/**
 * The hot-path check (or debit) of one policy with coalescing: `check(stateKey, cost)` decides `cost` on
 * the full state key `stateKey` on the Redis clock, in a batch with the checks of the same tick.
 *
 * @since 0.3.0
 * @category constructors
 */
export const coalescer = (
  options: CoalescerOptions
): (stateKey: string, cost: number) => Effect.Effect<Decision.Decision, RedisFailure> => {
  const { cluster, many, part, runner, single } = options
  const byCost = (batch: Batch) => (i: number) => batch.costs[i]!

  const send = (batch: Batch): void => {
    const { keys, resumes } = batch
    if (keys.length === 1) {
      const resume = resumes[0]!
      runner.runCallback(
        single.script,
        single.args(keys[0]!, 0, batch.costs[0]!),
        (reply) => resume(Replies.decisionOf(reply)),
        (failure) => resume(Effect.fail(failure))
      )
      return
    }
    runner.runCallback(
      many,
      manyArgs(part, keys, byCost(batch), 0),
      (reply) => {
        const decisions = Replies.decisionsIn(reply, keys.length, many.name)
        if (decisions instanceof BackendError) {
          for (const resume of resumes) resume(Effect.fail(decisions))
          return
        }
        for (let i = 0; i < resumes.length; i++) resumes[i]!(Effect.succeed(decisions[i]!))
      },
      (failure) => {
        for (const resume of resumes) resume(Effect.fail(failure))
      },
      true
    )
  }

  // One node: one open batch. A cluster: one open batch per slot.
  let open: Batch | undefined
  const openBySlot = new Map<number, Batch>()
  let tickScheduled = false
  const endTick = () => {
    tickScheduled = false
    if (open !== undefined) {
      const batch = open
      open = undefined
      send(batch)
    }
    if (openBySlot.size > 0) {
      // Several slots' batches (on up to every primary) leave in the tick's shared writes, one per node.
      if (openBySlot.size > 1) runner.holdWrites()
      for (const batch of openBySlot.values()) send(batch)
      openBySlot.clear()
    }
  }

  return (stateKey, cost) =>
    Effect.async<Decision.Decision, RedisFailure>((resume) => {
      let batch: Batch
      let slot = -1
      if (cluster) {
        slot = slotOf(stateKey)
        batch = openBySlot.get(slot) ?? new Batch()
        if (batch.keys.length === 0) openBySlot.set(slot, batch)
      } else {
        batch = open ??= new Batch()
      }
      batch.keys.push(stateKey)
      batch.costs.push(cost)
      batch.resumes.push(resume)
      if (!tickScheduled) {
        tickScheduled = true
        process.nextTick(endTick)
      }
      if (batch.keys.length === BATCH_SIZE) {
        if (cluster) openBySlot.delete(slot)
        else open = undefined
        send(batch)
      }
    })
}

/**
 * A `checkMany` as script calls for one pipeline, and how to read its replies back in the keys' order.
 *
 * @since 0.3.0
 * @category models
 */
export interface ManyPlan {
  readonly calls: ReadonlyArray<BatchCall>
  readonly decode: (replies: ReadonlyArray<Reply>) => Effect.Effect<Array<Decision.Decision>, BackendError>
}

/**
 * Plans `checkMany` of `cost` on `keys` (full state keys) at `now` (0: the Redis clock): `many.check` runs
 * of up to `MANY_CHUNK` keys; on a cluster one run per slot (a slot holding one of the keys gets the
 * policy's single-key script instead).
 *
 * @since 0.3.0
 * @category constructors
 */
export const planMany = (
  options: Pick<CoalescerOptions, "cluster" | "many" | "part" | "single">,
  keys: ReadonlyArray<string>,
  cost: number,
  now: number
): ManyPlan => {
  const { cluster, many, part, single } = options
  // Each run's keys, as indexes into `keys`; on a cluster, each run's slot.
  const runs: Array<Array<number>> = []
  const slots: Array<number> = []
  if (!cluster) {
    for (let from = 0; from < keys.length; from += MANY_CHUNK) {
      const run: Array<number> = []
      for (let i = from; i < Math.min(keys.length, from + MANY_CHUNK); i++) run.push(i)
      runs.push(run)
    }
  } else {
    const bySlot = new Map<number, Array<number>>()
    for (let i = 0; i < keys.length; i++) {
      const slot = slotOf(keys[i]!)
      const run = bySlot.get(slot)
      if (run === undefined || run.length === MANY_CHUNK) {
        const fresh = [i]
        bySlot.set(slot, fresh)
        runs.push(fresh)
        slots.push(slot)
      } else {
        run.push(i)
      }
    }
  }
  const costOf = () => cost
  const calls = runs.map((run, r): BatchCall => {
    const script = run.length === 1 ? single.script : many
    const args = run.length === 1
      ? single.args(keys[run[0]!]!, now, cost)
      : manyArgs(part, run.map((i) => keys[i]!), costOf, now)
    // On a cluster the runner groups the calls by slot: it takes the slot worked out here.
    return batchCall(script, args, cluster ? slots[r]! : undefined)
  })
  const decode = (replies: ReadonlyArray<Reply>) => {
    const decisions = new Array<Decision.Decision>(keys.length)
    for (let r = 0; r < runs.length; r++) {
      const run = runs[r]!
      const read = Replies.decisionsIn(run.length === 1 ? headOf(replies[r]!) : replies[r]!, run.length, many.name)
      if (read instanceof BackendError) return Effect.fail(read)
      for (let j = 0; j < run.length; j++) decisions[run[j]!] = read[j]!
    }
    return Effect.succeed(decisions)
  }
  return { calls, decode }
}

/** A single-key script's reply cut to its five-integer decision (its head), as `many.check` gives per key. */
const headOf = (reply: Reply): Reply => Array.isArray(reply) && reply.length > 5 ? reply.slice(0, 5) : reply
