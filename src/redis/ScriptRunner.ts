/**
 * Runs vendored scripts on an ioredis client, one node or a cluster: EVALSHA on the script's SHA-1,
 * falling back to EVAL when Redis answers NOSCRIPT (its cache is empty after a restart, a failover or
 * SCRIPT FLUSH; on a cluster each node has its own cache). A NOSCRIPT reply means the script did not run,
 * so the fallback never applies a consuming script twice; a cluster redirection (MOVED / ASK) means the
 * same, and the call is sent again to the node that owns the slot; no other failure is retried. Every
 * call is bounded by a timeout and fails with a typed error, never a hang.
 *
 * A batch (`runBatch`, `runPipelined`) is one call: one bound, one fence. A batch of one script is sent
 * as a single call (no pipeline). A larger one is one pipeline, split by node on a cluster: one pipeline
 * per node, written on the node's own connection, all sent at once, the replies put back in input
 * order. A single call on a cluster is written on its slot's primary connection too; a
 * reply that says it did not run there (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) sends it again through the
 * cluster client.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { Cluster, Redis } from "ioredis"
import type { BackendError, ServiceUnavailable } from "../Errors.js"
import { Deadlines, type Expiring } from "../internal/deadlines.js"
import type { RedisHandle } from "./RedisClient.js"
import { classify, fencedOut, isNoScript, timedOut } from "./RedisErrors.js"
import type { RedisTime } from "./RedisTime.js"
import { marshal, type Named, type Script } from "./Scripts.js"
import { slotOf } from "./Slots.js"

/**
 * A Redis reply as ioredis decodes it (strings for bulk replies, numbers for integers).
 *
 * @since 0.1.0
 * @category models
 */
export type Reply = string | number | null | ReadonlyArray<Reply>

/**
 * One script invocation with its KEYS and ARGV already in manifest order.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptCall {
  readonly script: Script
  readonly keys: ReadonlyArray<string>
  readonly argv: ReadonlyArray<string>
}

/**
 * What a failed script call reports.
 *
 * @since 0.1.0
 * @category models
 */
export type RedisFailure = ServiceUnavailable | BackendError

/**
 * The script runner of one client.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScriptRunner {
  readonly timeoutMs: number
  /** Builds a call, ordering `keys` and `argv` by the script's manifest names. */
  readonly prepare: (script: Script, keys: Named, argv: Named) => Effect.Effect<ScriptCall, BackendError>
  /** Runs one call (EVALSHA, EVAL on NOSCRIPT). */
  readonly run: (call: ScriptCall) => Effect.Effect<Reply, RedisFailure>
  /**
   * The hot path: runs `script` with `args` (what follows the SHA-1: numkeys, KEYS, ARGV, as
   * `evalArgs` builds them) and continues with `decode(reply)`, all in one Effect step.
   */
  readonly runDecoded: <A>(
    script: Script,
    args: EvalArgs,
    decode: (reply: Reply) => Effect.Effect<A, BackendError>
  ) => Effect.Effect<A, RedisFailure>
  /**
   * The callback form of `runDecoded`, for callers outside any fiber (a background lease refresh): sends
   * `script` with `args` (EVALSHA, EVAL on NOSCRIPT) under the same bound and reports exactly once,
   * `onReply(reply)` or `onFailure(failure)`, from the event loop (never before it returns). With
   * `ownWrite` (a script carrying many checks) it leaves in a socket write of its own, at once.
   */
  readonly runCallback: (
    script: Script,
    args: EvalArgs,
    onReply: (reply: Reply) => void,
    onFailure: (failure: RedisFailure) => void,
    ownWrite?: boolean
  ) => void
  /**
   * Runs calls in one pipeline round trip (one per node on a cluster), replies in order. Calls that did
   * not run (NOSCRIPT: re-sent with EVAL in a second round trip; a cluster redirection: re-sent to the
   * slot's node) are sent again; any other failure fails the whole batch.
   */
  readonly runPipelined: (calls: ReadonlyArray<ScriptCall>) => Effect.Effect<ReadonlyArray<Reply>, RedisFailure>
  /** `runPipelined` for calls whose arguments are built already (`evalArgs` or a `CallTemplate`): the hot batch. */
  readonly runBatch: (calls: ReadonlyArray<BatchCall>) => Effect.Effect<ReadonlyArray<Reply>, RedisFailure>
  /**
   * Says that several calls are about to be sent in this tick: from now they share writes (every node's
   * socket corked until the tick ends) from the first one on. Without it the tick's first call is written
   * at once, alone, which suits a lone caller.
   */
  readonly holdWrites: () => void
  /**
   * The runner is done: on a cluster it stops following the client's node changes (a client the caller
   * gave keeps running without the runner's listeners). Nothing on one node.
   */
  readonly release: () => void
}

/**
 * A script with its arguments (numkeys, KEYS, ARGV) built, as one entry of a batch.
 *
 * @since 0.3.0
 * @category models
 */
export interface BatchCall {
  readonly script: Script
  readonly args: EvalArgs
  /** The cluster slot of the call's keys, when its planner already worked it out (else read from `args`). */
  readonly slot?: number | undefined
}

/** A `BatchCall` built by `batchCall`. */
class PlannedCall implements BatchCall {
  constructor(readonly script: Script, readonly args: EvalArgs, readonly slot: number | undefined) {}
}

/**
 * A batch entry, built by a constructor rather than as an object literal. V8 may "pretenure" a literal's
 * allocation site (allocate its objects straight in the old generation) once it has seen them survive;
 * `checkMany`'s literal was, within 2 000 calls of a probe, and each old entry then kept its call's
 * arguments (every key string) alive past the young collections until a full one. A constructed object is
 * never pretenured that way.
 *
 * @since 0.3.0
 * @category constructors
 */
export const batchCall = (script: Script, args: EvalArgs, slot?: number): BatchCall =>
  new PlannedCall(script, args, slot)

/**
 * What follows the script (or its SHA-1) in an EVAL / EVALSHA: numkeys, then KEYS and ARGV.
 *
 * @since 0.1.0
 * @category models
 */
export type EvalArgs = [numkeys: number, ...keysThenArgv: Array<string | number>]

/**
 * The arguments after the script (or its SHA-1) of an EVAL / EVALSHA: numkeys, KEYS, ARGV.
 *
 * @since 0.1.0
 * @category utils
 */
export const evalArgs = (call: ScriptCall): EvalArgs => [call.keys.length, ...call.keys, ...call.argv]

/**
 * At most this many commands of one tick share a write: Redis starts on a batch while the next one is
 * being prepared (one write for the whole tick left Redis idle until every fiber of the tick had run,
 * then the process idle while Redis ran them all; measured at 64 in flight, 16 beat 8, 32 and no limit).
 */
const COMMANDS_PER_WRITE = 16

/**
 * One hot-path call in flight and where its outcome goes, settled exactly once (answer, failure or
 * expiry). One object per call (its promise reactions close over it), and no timer of its own: the
 * runner's `Deadlines` bound every call with one timer.
 */
abstract class InFlight implements Expiring {
  settled = false
  /** True when the call carries a fence: timed out, it can no longer apply. */
  fenced = false
  constructor(readonly what: string, readonly deadline: number) {}

  protected abstract onReply(reply: Reply): void
  protected abstract onFailure(failure: RedisFailure): void

  answer(reply: Reply): void {
    if (this.settled) return
    this.settled = true
    this.onReply(reply)
  }

  fail(failure: RedisFailure): void {
    if (this.settled) return
    this.settled = true
    this.onFailure(failure)
  }

  expire(timeoutMs: number): void {
    this.fail(timedOut(timeoutMs, this.what, this.fenced))
  }
}

/** A `runDecoded` call: resumes its fiber with the decoded reply or the failure. */
class FiberCall<A> extends InFlight {
  constructor(
    readonly resume: (effect: Effect.Effect<A, RedisFailure>) => void,
    readonly decode: (reply: Reply) => Effect.Effect<A, BackendError>,
    what: string,
    deadline: number
  ) {
    super(what, deadline)
  }

  protected onReply(reply: Reply): void {
    this.resume(this.decode(reply))
  }

  protected onFailure(failure: RedisFailure): void {
    this.resume(Effect.fail(failure))
  }
}

/** The replies of a batch of one call. */
const onlyReply = (reply: Reply): Effect.Effect<ReadonlyArray<Reply>> => Effect.succeed([reply])

/** A `runCallback` call: reports to plain callbacks. */
class CallbackCall extends InFlight {
  constructor(
    readonly reply: (reply: Reply) => void,
    readonly failure: (failure: RedisFailure) => void,
    what: string,
    deadline: number
  ) {
    super(what, deadline)
  }

  protected onReply(reply: Reply): void {
    this.reply(reply)
  }

  protected onFailure(failure: RedisFailure): void {
    this.failure(failure)
  }
}

/**
 * A batch in flight (`runBatch`): one deadline and one outcome for all its calls, settled once, with
 * every reply (in input order) or the first failure, or on expiry.
 */
class BatchRun implements Expiring {
  settled = false
  /** True when the batch's consuming calls carry its fence: timed out, none of them can apply. */
  fenced = false
  readonly replies: Array<Reply>
  private waiting: number

  constructor(
    readonly calls: ReadonlyArray<BatchCall>,
    readonly resume: (effect: Effect.Effect<ReadonlyArray<Reply>, RedisFailure>) => void,
    readonly deadline: number
  ) {
    this.replies = new Array<Reply>(calls.length)
    this.waiting = calls.length
  }

  /** Sets call `i`'s reply; the last one answers the batch. */
  answer(i: number, reply: Reply): void {
    if (this.settled) return
    this.replies[i] = reply
    if (--this.waiting > 0) return
    this.settled = true
    this.resume(Effect.succeed(this.replies))
  }

  fail(failure: RedisFailure): void {
    if (this.settled) return
    this.settled = true
    this.resume(Effect.fail(failure))
  }

  expire(timeoutMs: number): void {
    this.fail(timedOut(timeoutMs, `pipeline of ${this.calls.length} scripts`, this.fenced))
  }
}

/** A consuming call waiting to be sent with a replica acknowledgement (see `flushAcked`). */
interface AckedCall {
  readonly call: InFlight
  readonly script: Script
  readonly args: EvalArgs
  /** Redirections followed so far. */
  readonly redirections: number
}

/**
 * How much of its bound a consuming call has to start in Redis: its fence falls this fraction of the
 * timeout after it is sent, leaving the rest for the reply to come back. A call Redis starts later
 * applies nothing (reply `{-2}`), so a call that timed out never counts afterwards.
 */
const FENCE_FRACTION = 0.75

/** True for the reply of a consuming script that started after its fence. */
const isFencedReply = (reply: Reply): boolean => Array.isArray(reply) && reply.length === 1 && reply[0] === -2

/**
 * Options of a script runner.
 *
 * @since 0.3.0
 * @category models
 */
export interface ScriptRunnerOptions {
  /** The Redis clock of the connection: with it, every consuming script is sent with its fence. */
  readonly time?: RedisTime | undefined
  /** Replicas that must acknowledge a consuming call's write (`WAIT`) before it answers (default 0). */
  readonly replicaAcks?: number | undefined
}

/** What a pipeline gives back: per command, its error or its reply (null when the pipeline was discarded). */
type PipelineResult = Array<[error: Error | null, result: unknown]> | null

/** The node group of each slot a cluster client knows, or undefined for a single node (or a cluster not yet mapped). */
const nodeGroupOf = (client: RedisHandle): ((key: string) => string) | undefined => {
  if (!client.isCluster) return undefined
  const slots = (client as Cluster).slots
  if (slots.length === 0) return undefined
  return (key) => slots[slotOf(key)]?.join(";") ?? ""
}

/** The sockets a tick's commands may be written to: the node's, or every cluster primary's. */
const streamsOf = (client: RedisHandle): ReadonlyArray<Redis["stream"]> => {
  if (!client.isCluster) {
    const stream = (client as Redis).stream
    return stream === undefined ? [] : [stream]
  }
  const streams: Array<Redis["stream"]> = []
  for (const node of (client as Cluster).nodes("master")) {
    if (node.stream !== undefined) streams.push(node.stream)
  }
  return streams
}

/** The error replies of a cluster node that mean a command did not run there (it may run elsewhere). */
const DID_NOT_RUN_THERE = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN) /

/**
 * A cluster's node connections by address ("host:port", as its slot map names them), to write a call
 * straight to its slot's primary. Read again from the cluster client after it adds or drops a node.
 */
class Primaries {
  private byAddress = new Map<string, Redis>()
  private stale = true

  private readonly invalidate = () => {
    this.stale = true
  }

  constructor(private readonly cluster: Cluster) {
    cluster.on("+node", this.invalidate)
    cluster.on("-node", this.invalidate)
  }

  /** Stops following the cluster client's node changes. */
  release(): void {
    this.cluster.off("+node", this.invalidate)
    this.cluster.off("-node", this.invalidate)
  }

  /** The ready connection of the primary serving `slot`, or undefined (slot not mapped, node not ready). */
  forSlot(slot: number): Redis | undefined {
    const address = this.cluster.slots[slot]?.[0]
    if (address === undefined) return undefined
    if (this.stale) {
      this.stale = false
      this.byAddress = new Map()
      for (const node of this.cluster.nodes("all")) {
        this.byAddress.set(`${node.options.host}:${node.options.port}`, node)
      }
    }
    const node = this.byAddress.get(address)
    return node !== undefined && node.status === "ready" ? node : undefined
  }

  /** `forSlot` of `key`'s slot. */
  forKey(key: string): Redis | undefined {
    return this.forSlot(slotOf(key))
  }
}

/**
 * Builds the runner over `client` (one node or a cluster); every call fails with `ServiceUnavailable`
 * when it gets no answer within `timeoutMs`. With `options.time` (the Redis clock of the connection), every
 * consuming script is sent with its fence, `FENCE_FRACTION` of the bound after it leaves: a call that
 * failed is never applied afterwards. With `options.replicaAcks`, a consuming call answers only once
 * that many replicas hold its write.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeScriptRunner = (
  client: RedisHandle,
  timeoutMs: number,
  options: ScriptRunnerOptions = {}
): ScriptRunner => {
  const time = options.time
  const replicaAcks = options.replicaAcks ?? 0
  /** On a cluster, the primaries' own connections, to write a call straight to its slot's primary. */
  const primaries = client.isCluster ? new Primaries(client as Cluster) : undefined
  /** How long a `WAIT` may block: half the bound, so its answer still comes back within it. */
  const waitMs = Math.max(1, Math.floor(timeoutMs / 2))
  const fenceWithin = timeoutMs * FENCE_FRACTION
  /** Writes the fence into `args` (numkeys, KEYS, ARGV) when `script` takes one; true when it did. */
  const fence = (script: Script, args: EvalArgs): boolean => {
    if (time === undefined || script.fenceAt < 0) return false
    args[1 + args[0] + script.fenceAt] = String(time.fenceAfter(fenceWithin))
    return true
  }

  // The commands after the first of a tick leave in shared writes (of up to COMMANDS_PER_WRITE): the
  // second corks the socket until the tick ends (Node's cork / nextTick-uncork pattern). Concurrent
  // checks arrive from many fibers a few µs apart, and a write syscall each cost more than their whole
  // Effect overhead; a lone command (a serial caller) is written at once, as without corking.
  // On a cluster every primary's socket is corked alike.
  let commandsThisTick = 0
  let corked: ReadonlyArray<Redis["stream"]> | undefined
  const endTick = () => {
    commandsThisTick = 0
    const streams = corked
    corked = undefined
    if (streams !== undefined) { for (const stream of streams) stream.uncork() }
  }
  const coalesceWrites = (ownWrite: boolean) => {
    commandsThisTick++
    if (commandsThisTick === 1) {
      process.nextTick(endTick)
    } else if (ownWrite) {
      // A command that carries many checks leaves now, after what is buffered, so Redis starts on it while
      // the tick goes on (corked with the tick's other batches, Redis ran them all before answering any,
      // and the process sat idle meanwhile).
      if (corked !== undefined) {
        for (const stream of corked) stream.uncork()
        corked = undefined
      }
    } else if (corked === undefined) {
      corked = streamsOf(client)
      for (const stream of corked) stream.cork()
    } else if (commandsThisTick % COMMANDS_PER_WRITE === 1) {
      // The previous batch leaves now; this command starts the next.
      for (const stream of corked) {
        stream.uncork()
        stream.cork()
      }
    }
  }

  const holdWrites = () => {
    if (corked !== undefined) return
    if (commandsThisTick === 0) {
      commandsThisTick = 1
      process.nextTick(endTick)
    }
    corked = streamsOf(client)
    for (const stream of corked) stream.cork()
  }

  /** A consuming script waits for its replicas' acknowledgement (when asked to) before it answers. */
  const acked = (script: Script) => replicaAcks > 0 && script.fenceAt >= 0

  /** The error of a write that too few replicas acknowledged within `waitMs`. */
  const notAcknowledged = (acks: unknown) =>
    new Error(
      `the write was acknowledged by ${String(acks)} of ${replicaAcks} replica(s) within ${waitMs} ms ` +
        "(it may have been applied)"
    )

  /**
   * After a redirection a cluster's slot map is read again (one CLUSTER SLOTS) before a call is re-sent:
   * a pipeline's redirection does not update ioredis's map by itself.
   */
  const refreshSlots = (): Promise<void> => new Promise((done) => (client as Cluster).refreshSlotsCache(() => done()))

  /** Redirections an acknowledged call follows before it fails (ioredis follows those of a plain call). */
  const MAX_REDIRECTIONS = 3

  /** Sends one script through `target`: its SHA-1, or its text after NOSCRIPT. */
  const sendOn = (target: RedisHandle, script: Script, args: EvalArgs, asText: boolean): Promise<Reply> =>
    (asText ? target.eval(script.text, ...args) : target.evalsha(script.sha1, ...args)) as Promise<Reply>

  /**
   * Sends one script. On a cluster it is written straight on the connection of its slot's primary: the
   * cluster client's own routing (a command object per call, the slot worked out again, a rejection
   * handler wrapped per call) cost more than the rest of a check. A reply saying it did not run there
   * (a redirection, TRYAGAIN, CLUSTERDOWN) sends it again through the cluster client, which follows
   * redirections, refreshes its slot map and waits out a failover as it does for any command. Without a
   * ready connection for the slot, it goes through the cluster client at once.
   */
  const sendOne = (script: Script, args: EvalArgs, asText: boolean): Promise<Reply> => {
    const node = primaries === undefined || args[0] === 0 ? undefined : primaries.forKey(String(args[1]))
    if (node === undefined) return sendOn(client, script, args, asText)
    return sendOn(node, script, args, asText).catch((error: unknown) =>
      error instanceof Error && DID_NOT_RUN_THERE.test(error.message)
        ? sendOn(client, script, args, asText)
        : Promise.reject(error)
    )
  }

  // Consuming calls that must be acknowledged by replicas. WAIT blocks its connection until the replicas
  // answer, so a WAIT per call would serialize every caller on a node behind the previous one's wait.
  // Instead the acknowledged calls of one tick leave as one pipeline per node ending with ONE WAIT, which
  // covers every write before it on that connection.
  let awaitingAck: Array<AckedCall> = []
  const flushAcked = () => {
    const batch = awaitingAck
    awaitingAck = []
    const groupOf = nodeGroupOf(client)
    if (groupOf === undefined) return sendAckedGroup(batch, false)
    const groups = new Map<string, Array<AckedCall>>()
    for (const acked of batch) {
      const group = groupOf(acked.args[0] > 0 ? String(acked.args[1]) : "")
      const members = groups.get(group)
      if (members === undefined) groups.set(group, [acked])
      else members.push(acked)
    }
    for (const members of groups.values()) sendAckedGroup(members, false)
  }
  const enqueueAcked = (acked: AckedCall) => {
    if (awaitingAck.length === 0) process.nextTick(flushAcked)
    awaitingAck.push(acked)
  }

  /** Settles one acknowledged call with its reply, unless it reached Redis after its fence. */
  const answerAcked = (acked: AckedCall, reply: Reply) => {
    if (acked.call.fenced && isFencedReply(reply)) acked.call.fail(fencedOut(acked.script.name))
    else acked.call.answer(reply)
  }

  /**
   * One pipeline of acknowledged calls (all for one node) and a WAIT. Each call is settled on its own:
   * answered when it ran and the replicas acknowledged; sent again by text after NOSCRIPT (same node);
   * after MOVED / ASK sent again once the slot map is read again (at most `MAX_REDIRECTIONS` times); failed
   * otherwise.
   */
  const sendAckedGroup = (group: ReadonlyArray<AckedCall>, asText: boolean): void => {
    const pipeline = client.pipeline()
    for (const { args, script } of group) {
      if (asText) pipeline.eval(script.text, ...args)
      else pipeline.evalsha(script.sha1, ...args)
    }
    pipeline.wait(replicaAcks, waitMs)
    const failAll = (error: unknown) => {
      const failure = classify(error)
      for (const acked of group) acked.call.fail(failure)
      deadlines.settled()
    }
    pipeline.exec().then((results: PipelineResult) => {
      if (results === null || results.length <= group.length) return failAll(new Error("pipeline discarded"))
      const [waitError, acks] = results[group.length]!
      const unacknowledged = waitError ?? (typeof acks === "number" && acks >= replicaAcks
        ? undefined
        : notAcknowledged(acks))
      const noScript: Array<AckedCall> = []
      const redirected: Array<AckedCall> = []
      for (let i = 0; i < group.length; i++) {
        const acked = group[i]!
        const [error, reply] = results[i]!
        if (error === null) {
          if (unacknowledged === undefined) answerAcked(acked, reply as Reply)
          else acked.call.fail(classify(unacknowledged))
        } else if (/^NOSCRIPT /.test(error.message) && !asText) {
          noScript.push(acked)
        } else if (/^(MOVED|ASK) /.test(error.message) && client.isCluster && acked.redirections < MAX_REDIRECTIONS) {
          redirected.push(acked)
        } else {
          acked.call.fail(classify(error))
        }
      }
      deadlines.settled()
      // Neither ran, so sending them again cannot apply them twice.
      if (noScript.length > 0) sendAckedGroup(noScript, true)
      if (redirected.length > 0) {
        refreshSlots().then(() => {
          for (const acked of redirected) {
            if (!acked.call.settled) enqueueAcked({ ...acked, redirections: acked.redirections + 1 })
          }
        })
      }
    }, failAll)
  }

  const prepare: ScriptRunner["prepare"] = (script, keys, argv) =>
    Effect.zipWith(
      marshal(script, "keys", keys),
      marshal(script, "argv", argv),
      (k, a): ScriptCall => ({ script, keys: k, argv: a })
    )

  const deadlines = new Deadlines(timeoutMs)

  /** Sends `call` (EVALSHA, then EVAL on NOSCRIPT) with its fence, under the shared deadlines, and settles it. */
  const dispatch = (call: InFlight, script: Script, args: EvalArgs, ownWrite = false): void => {
    call.fenced = fence(script, args)
    deliver(call, script, args, ownWrite)
  }

  /** `dispatch` for a call whose fence (if any) is written already: `call.fenced` says whether it is. */
  const deliver = (call: InFlight, script: Script, args: EvalArgs, ownWrite = false): void => {
    deadlines.track(call)
    if (acked(script)) return enqueueAcked({ call, script, args, redirections: 0 })
    coalesceWrites(ownWrite)
    const sent = sendOne(script, args, false)
    const answered = (reply: Reply) => {
      if (call.fenced && isFencedReply(reply)) call.fail(fencedOut(script.name))
      else call.answer(reply)
      deadlines.settled()
    }
    sent.then(
      answered,
      (error: unknown) => {
        const failure = classify(error)
        if (call.settled || !isNoScript(failure)) {
          call.fail(failure)
          deadlines.settled()
          return
        }
        // NOSCRIPT: the script did not run, so sending its text cannot apply it twice.
        coalesceWrites(ownWrite)
        const resent = sendOne(script, args, true)
        resent.then(
          answered,
          (retryError: unknown) => {
            call.fail(classify(retryError))
            deadlines.settled()
          }
        )
      }
    )
  }

  // One callback-based Effect with no canceler (a canceler wraps the call in an interruption handler;
  // an interrupted fiber ignores a late answer anyway) and no timer of its own. (A timeout racing the call
  // against a sleep forks two fibers per call; on a check that cost more than the round trip.)
  const runDecoded: ScriptRunner["runDecoded"] = (script, args, decode) =>
    Effect.async((resume) => {
      dispatch(new FiberCall(resume, decode, script.name, performance.now() + timeoutMs), script, args)
    })

  const runCallback: ScriptRunner["runCallback"] = (script, args, onReply, onFailure, ownWrite) =>
    dispatch(new CallbackCall(onReply, onFailure, script.name, performance.now() + timeoutMs), script, args, ownWrite)

  const run: ScriptRunner["run"] = (call) => runDecoded(call.script, evalArgs(call), Effect.succeed)

  /** True for a consuming script's reply `{-2}`: it reached Redis after its fence and applied nothing. */
  const fencedOutAt = (call: BatchCall, reply: Reply) => call.script.fenceAt >= 0 && isFencedReply(reply)

  /** Writes one fence (the batch's) into every call of `calls` that takes one; true when one did. */
  const fenceAll = (calls: ReadonlyArray<BatchCall>): boolean => {
    if (time === undefined) return false
    let at: string | undefined
    for (const { args, script } of calls) {
      if (script.fenceAt < 0) continue
      at ??= String(time.fenceAfter(fenceWithin))
      args[1 + args[0] + script.fenceAt] = at
    }
    return at !== undefined
  }

  /**
   * Sends the calls `members` (indexes into `batch.calls`) of one node in one pipeline on `target` (the
   * node's own connection, or the cluster client, which routes a pipeline to its slots' node), by SHA-1
   * or by text, with one `WAIT` after them when one of them must be acknowledged, and settles their
   * replies in `batch`. A call that did not run is sent again: after NOSCRIPT by text to the same node,
   * after a redirection (MOVED / ASK) through the cluster client, which follows it. Any other failure
   * fails the batch.
   */
  const sendBatchPipeline = (
    batch: BatchRun,
    target: RedisHandle,
    members: ReadonlyArray<number>,
    asText: boolean
  ): void => {
    const calls = batch.calls
    const pipeline = target.pipeline()
    let waits = false
    for (const i of members) {
      const { args, script } = calls[i]!
      if (asText) pipeline.eval(script.text, ...args)
      else pipeline.evalsha(script.sha1, ...args)
      waits ||= acked(script)
    }
    if (waits) pipeline.wait(replicaAcks, waitMs)
    pipeline.exec().then(
      (results: PipelineResult) => {
        if (batch.settled) return
        const failure = batchFailure(batch, members, results, waits, asText)
        if (failure !== undefined) batch.fail(failure)
        else resendUnrun(batch, target, members, results!, asText)
        deadlines.settled()
      },
      (error: unknown) => {
        batch.fail(classify(error))
        deadlines.settled()
      }
    )
  }

  /**
   * Why the replies `results` of one node's pipeline fail the batch, or undefined: a discarded
   * pipeline, too few replica acknowledgements, a call fenced out, or an error other than NOSCRIPT and a
   * redirection (a call that did not run).
   */
  const batchFailure = (
    batch: BatchRun,
    members: ReadonlyArray<number>,
    results: PipelineResult,
    waits: boolean,
    asText: boolean
  ): RedisFailure | undefined => {
    if (results === null || results.length < members.length + (waits ? 1 : 0)) {
      return classify(new Error("pipeline discarded (transaction aborted)"))
    }
    if (waits) {
      const [error, acks] = results[members.length]!
      if (error !== null) return classify(error)
      if (typeof acks !== "number" || acks < replicaAcks) return classify(notAcknowledged(acks))
    }
    for (let j = 0; j < members.length; j++) {
      const [error, reply] = results[j]!
      const call = batch.calls[members[j]!]!
      if (error === null) {
        if (fencedOutAt(call, reply as Reply)) return fencedOut(call.script.name)
      } else if (!(asText ? /^(MOVED|ASK) / : /^(NOSCRIPT|MOVED|ASK) /).test(error.message)) {
        return classify(error)
      }
    }
    return undefined
  }

  /**
   * Settles the calls of one node's pipeline that ran, and sends again those that did not (see
   * `sendBatchPipeline`); neither kind ran, so sending them again cannot apply them twice.
   */
  const resendUnrun = (
    batch: BatchRun,
    target: RedisHandle,
    members: ReadonlyArray<number>,
    results: NonNullable<PipelineResult>,
    asText: boolean
  ): void => {
    let noScript: Array<number> | undefined
    for (let j = 0; j < members.length && !batch.settled; j++) {
      const [error, reply] = results[j]!
      const i = members[j]!
      if (error === null) {
        batch.answer(i, reply as Reply)
      } else if (/^NOSCRIPT /.test(error.message) && !asText) {
        ;(noScript ??= []).push(i)
      } else {
        // A redirection: the cluster client sends it to the slot's node now (following MOVED / ASK),
        // with the batch's fence and deadline.
        const { args, script } = batch.calls[i]!
        const call = new CallbackCall(
          (reply) => batch.answer(i, reply),
          (failure) => batch.fail(failure),
          script.name,
          batch.deadline
        )
        call.fenced = batch.fenced && script.fenceAt >= 0
        deliver(call, script, args)
      }
    }
    if (noScript !== undefined && !batch.settled) sendBatchPipeline(batch, target, noScript, true)
  }

  /**
   * Sends a batch: one pipeline on a single node; on a cluster, one per node, each written straight on
   * the node's connection (the cluster client's pipeline would work out every call's slot again and
   * route each call on its own), all at once. A node the client has no ready connection to (or a
   * cluster not mapped yet) gets its share through the cluster client's pipeline.
   */
  const startBatch = (batch: BatchRun): void => {
    const calls = batch.calls
    if (!client.isCluster) return sendBatchPipeline(batch, client, calls.map((_, i) => i), false)
    const cluster = client as Cluster
    // ioredis numbers each set of nodes serving a slot (its primary and replicas): one group per number.
    const groupsBySlot = cluster._groupsBySlot
    const groups = new Map<number, { slot: number; members: Array<number> }>()
    for (let i = 0; i < calls.length; i++) {
      const { args, slot: planned } = calls[i]!
      const slot = planned ?? (args[0] > 0 ? slotOf(String(args[1])) : 0)
      const group = groupsBySlot[slot] ?? -1
      const known = groups.get(group)
      if (known === undefined) groups.set(group, { slot, members: [i] })
      else known.members.push(i)
    }
    for (const [group, { members, slot }] of groups) {
      const node = group < 0 ? undefined : primaries?.forSlot(slot)
      sendBatchPipeline(batch, node ?? cluster, members, false)
    }
  }

  // One callback-based Effect, as `runDecoded`: the batch is one call under the shared deadlines (one
  // bound and one fence for all of its calls), settled once, with every reply in input order. A batch of
  // one call (a `checkMany` of up to 128 keys on one node) is sent as a single call, in a write of its own:
  // the same bound, fence, NOSCRIPT and redirection handling, without a pipeline's objects and promise.
  const runBatch: ScriptRunner["runBatch"] = (calls) => {
    if (calls.length === 0) return Effect.succeed([])
    if (calls.length === 1) {
      const { args, script } = calls[0]!
      return Effect.async<ReadonlyArray<Reply>, RedisFailure>((resume) => {
        dispatch(new FiberCall(resume, onlyReply, script.name, performance.now() + timeoutMs), script, args, true)
      })
    }
    return Effect.async<ReadonlyArray<Reply>, RedisFailure>((resume) => {
      const batch = new BatchRun(calls, resume, performance.now() + timeoutMs)
      batch.fenced = fenceAll(calls)
      deadlines.track(batch)
      startBatch(batch)
    })
  }

  const runPipelined: ScriptRunner["runPipelined"] = (calls) =>
    runBatch(calls.map((call) => batchCall(call.script, evalArgs(call))))

  const release = () => primaries?.release()

  return { timeoutMs, prepare, run, runDecoded, runCallback, runPipelined, runBatch, holdWrites, release }
}
