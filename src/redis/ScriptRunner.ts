/**
 * Runs vendored scripts on an ioredis client: EVALSHA on the script's SHA-1, falling back to EVAL
 * when Redis answers NOSCRIPT (its cache is empty after a restart or SCRIPT FLUSH). A NOSCRIPT reply
 * means the script did not run, so the fallback never applies a consuming script twice; no other
 * failure is retried. Every call is bounded by a timeout and fails with a typed error, never a hang.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { Redis } from "ioredis"
import type { BackendError, ServiceUnavailable } from "../Errors.js"
import { classify, fencedOut, isNoScript, timedOut } from "./RedisErrors.js"
import type { RedisTime } from "./RedisTime.js"
import { marshal, type Named, type Script } from "./Scripts.js"

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
   * `onReply(reply)` or `onFailure(failure)`, from the event loop (never before it returns).
   */
  readonly runCallback: (
    script: Script,
    args: EvalArgs,
    onReply: (reply: Reply) => void,
    onFailure: (failure: RedisFailure) => void
  ) => void
  /**
   * Runs calls in one pipeline round trip, replies in order. Calls that hit NOSCRIPT (and so did not
   * run) are re-sent with EVAL in a second round trip; any other failure fails the whole batch.
   */
  readonly runPipelined: (calls: ReadonlyArray<ScriptCall>) => Effect.Effect<ReadonlyArray<Reply>, RedisFailure>
}

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

/** Bounds run on the real clock, so a `TestClock` in the caller's context never stalls a timeout. */
const liveClock = Clock.make()

type PipelineResult = Array<[error: Error | null, result: unknown]> | null

const settle = (results: PipelineResult, size: number): Array<Reply | RedisFailure> => {
  if (results === null) {
    return Array.from({ length: size }, () => classify(new Error("pipeline discarded (transaction aborted)")))
  }
  return results.map(([error, result]) => error === null ? result as Reply : classify(error))
}

const isFailure = (value: Reply | RedisFailure): value is RedisFailure =>
  typeof value === "object" && value !== null && "_tag" in value

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

/** What `Deadlines` needs of a call. */
interface Expiring {
  readonly settled: boolean
  readonly deadline: number
  /** Fails the call as timed out, unless it settled already. */
  expire(timeoutMs: number): void
}

/**
 * The deadlines (on the monotonic `performance.now()` clock) of a runner's calls in flight. Every call
 * gets the same bound, so deadlines come in the order calls start: a queue whose head is the next to
 * expire, and one timer armed for the head. Calls that settled leave the head as soon as they reach it
 * (replies on one connection come in order, so the queue holds about the calls in flight). The timer is
 * unreferenced while nothing is in flight, so an idle runner never keeps the process alive.
 */
class Deadlines {
  private readonly calls: Array<Expiring> = []
  private head = 0
  private timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(readonly timeoutMs: number) {}

  /** Tracks `call` (whose deadline is now + timeoutMs) until it settles or expires. */
  track(call: Expiring): void {
    this.calls.push(call)
    if (this.timer === undefined) this.arm(this.timeoutMs)
    else if (this.calls.length - this.head === 1) this.timer.ref()
  }

  /** Drops settled calls from the head; called after a call settles. */
  settled(): void {
    const calls = this.calls
    while (this.head < calls.length && calls[this.head]!.settled) this.head++
    if (this.head === calls.length) {
      calls.length = 0
      this.head = 0
      this.timer?.unref()
    } else if (this.head >= 1024 && this.head * 2 >= calls.length) {
      calls.splice(0, this.head)
      this.head = 0
    }
  }

  private arm(inMs: number): void {
    this.timer = setTimeout(this.expire, Math.max(1, inMs))
  }

  private readonly expire = (): void => {
    this.timer = undefined
    const now = performance.now()
    const calls = this.calls
    while (this.head < calls.length && calls[this.head]!.deadline <= now) {
      calls[this.head++]!.expire(this.timeoutMs)
    }
    this.settled()
    if (this.head < calls.length) this.arm(calls[this.head]!.deadline - now)
  }
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
 * Builds the runner over `client`; every call fails with `ServiceUnavailable` when it gets no answer
 * within `timeoutMs`. With `time` (the Redis clock of the connection), every consuming script is sent
 * with its fence, `FENCE_FRACTION` of the bound after it leaves: a call that failed is never applied
 * afterwards.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeScriptRunner = (client: Redis, timeoutMs: number, time?: RedisTime): ScriptRunner => {
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
  let commandsThisTick = 0
  let corked: Redis["stream"] | undefined
  const endTick = () => {
    commandsThisTick = 0
    const stream = corked
    corked = undefined
    stream?.uncork()
  }
  const coalesceWrites = () => {
    commandsThisTick++
    if (commandsThisTick === 1) {
      process.nextTick(endTick)
    } else if (corked === undefined && client.stream !== undefined) {
      corked = client.stream
      corked.cork()
    } else if (corked !== undefined && commandsThisTick % COMMANDS_PER_WRITE === 1) {
      // The previous batch leaves now; this command starts the next.
      corked.uncork()
      corked.cork()
    }
  }

  const bounded = <A>(what: string, effect: Effect.Effect<A, RedisFailure>) =>
    Effect.timeoutFail(effect, { duration: timeoutMs, onTimeout: () => timedOut(timeoutMs, what) }).pipe(
      Effect.withClock(liveClock)
    )

  const send = <A>(promise: () => Promise<A>) => Effect.tryPromise({ try: promise, catch: classify })

  const prepare: ScriptRunner["prepare"] = (script, keys, argv) =>
    Effect.zipWith(
      marshal(script, "keys", keys),
      marshal(script, "argv", argv),
      (k, a): ScriptCall => ({ script, keys: k, argv: a })
    )

  const deadlines = new Deadlines(timeoutMs)

  /** Sends `call` (EVALSHA, then EVAL on NOSCRIPT) under the shared deadlines, and settles it. */
  const dispatch = (call: InFlight, script: Script, args: EvalArgs): void => {
    call.fenced = fence(script, args)
    deadlines.track(call)
    coalesceWrites()
    const sent = client.evalsha(script.sha1, ...args) as Promise<Reply>
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
        coalesceWrites()
        const resent = client.eval(script.text, ...args) as Promise<Reply>
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
  // an interrupted fiber ignores a late answer anyway) and no timer of its own. (`bounded` races the
  // call against a sleep, which forks two fibers per call; on a check that cost more than the round trip.)
  const runDecoded: ScriptRunner["runDecoded"] = (script, args, decode) =>
    Effect.async((resume) => {
      dispatch(new FiberCall(resume, decode, script.name, performance.now() + timeoutMs), script, args)
    })

  const runCallback: ScriptRunner["runCallback"] = (script, args, onReply, onFailure) =>
    dispatch(new CallbackCall(onReply, onFailure, script.name, performance.now() + timeoutMs), script, args)

  const run: ScriptRunner["run"] = (call) => runDecoded(call.script, evalArgs(call), Effect.succeed)

  const runPipelined: ScriptRunner["runPipelined"] = (calls) => {
    if (calls.length === 0) return Effect.succeed([])
    return bounded(
      `pipeline of ${calls.length} scripts`,
      Effect.gen(function*() {
        const first = settle(
          yield* send(() => {
            const pipeline = client.pipeline()
            for (const call of calls) {
              const args = evalArgs(call)
              fence(call.script, args)
              pipeline.evalsha(call.script.sha1, ...args)
            }
            return pipeline.exec()
          }),
          calls.length
        )
        const missing: Array<number> = []
        for (let i = 0; i < first.length; i++) {
          const reply = first[i]!
          if (!isFailure(reply) && isFencedReply(reply) && calls[i]!.script.fenceAt >= 0) {
            return yield* Effect.fail(fencedOut(calls[i]!.script.name))
          }
          if (isFailure(reply)) {
            if (!isNoScript(reply)) return yield* Effect.fail(reply)
            missing.push(i)
          }
        }
        if (missing.length > 0) {
          const second = settle(
            yield* send(() => {
              const pipeline = client.pipeline()
              for (const i of missing) {
                const args = evalArgs(calls[i]!)
                fence(calls[i]!.script, args)
                pipeline.eval(calls[i]!.script.text, ...args)
              }
              return pipeline.exec()
            }),
            missing.length
          )
          for (let j = 0; j < missing.length; j++) {
            const reply = second[j]!
            if (isFailure(reply)) return yield* Effect.fail(reply)
            if (isFencedReply(reply) && calls[missing[j]!]!.script.fenceAt >= 0) {
              return yield* Effect.fail(fencedOut(calls[missing[j]!]!.script.name))
            }
            first[missing[j]!] = reply
          }
        }
        return first as Array<Reply>
      })
    )
  }

  return { timeoutMs, prepare, run, runDecoded, runCallback, runPipelined }
}
