/**
 * Support for the reliability suites: policies with short windows, a load driver that records every
 * call's outcome and latency, and worker child processes (`fixtures/worker.ts`) that run a door in a
 * process of their own so the tests can load, freeze and kill them.
 */
import { Cause, Data, Duration, Effect, Exit, Option, Schedule, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import type { AdmitterPolicy, LimiterPolicy } from "../../src/Policy.js"

/** The repository root (this file is test/reliability/support.ts). */
export const repoRoot = path.resolve(import.meta.dirname, "../..")

/** A fixed-window limiter. */
export const fixedWindow = (name: string, limit: number, windowMs: number): LimiterPolicy => ({
  kind: "limiter",
  name,
  prefix: name,
  maxKeys: 100_000,
  strategy: { kind: "fixedWindow", limit, windowMs }
})

/** A pinned concurrency ceiling. */
export const pool = (name: string, ceiling: number): AdmitterPolicy => ({
  kind: "admitter",
  name,
  prefix: name,
  maxKeys: 100_000,
  concurrency: {
    algorithm: "fixed",
    minLimit: ceiling,
    maxLimit: ceiling,
    initialLimit: ceiling,
    backoffRatio: 0.9,
    smoothing: 0.2,
    tolerance: 2,
    rttWindow: 100
  }
})

// ---------------------------------------------------------------------------------------------------------
// Outcomes of calls under load
// ---------------------------------------------------------------------------------------------------------

/** How one call ended: a value, a typed failure (its tag), a defect, or an interruption. */
export type Ending = "success" | "die" | "interrupt" | `fail:${string}`

/** The ending of an exit: never "success" for a defect hidden behind a failure. */
export const endingOf = (exit: Exit.Exit<unknown, { readonly _tag: string }>): Ending => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isDie(exit.cause)) return "die"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return `fail:${failure.value._tag}`
  return "interrupt"
}

/** One recorded call: when it started and ended (ms since the recorder began) and how. */
export interface Outcome<A> {
  readonly start: number
  readonly end: number
  readonly ending: Ending
  readonly value: A | undefined
  readonly error: { readonly _tag: string; readonly message: string } | undefined
}

/** Records every call made through `record`, with real-time start and end. */
export class Recorder<A> {
  readonly outcomes: Array<Outcome<A>> = []
  private readonly origin = performance.now()

  /** Milliseconds since the recorder began. */
  now(): number {
    return performance.now() - this.origin
  }

  /** Runs `effect`, recording its outcome; never fails. */
  record<E extends { readonly _tag: string; readonly message: string }, R>(
    effect: Effect.Effect<A, E, R>
  ): Effect.Effect<Outcome<A>, never, R> {
    return Effect.suspend(() => {
      const start = this.now()
      return Effect.map(Effect.exit(effect), (exit) => {
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        const outcome: Outcome<A> = {
          start,
          end: this.now(),
          ending: endingOf(exit),
          value: Exit.isSuccess(exit) ? exit.value : undefined,
          error: Option.isSome(failure) ? { _tag: failure.value._tag, message: failure.value.message } : undefined
        }
        this.outcomes.push(outcome)
        return outcome
      })
    })
  }

  /** Counts of each ending. */
  tally(filter: (outcome: Outcome<A>) => boolean = () => true): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const outcome of this.outcomes) {
      if (filter(outcome)) counts[outcome.ending] = (counts[outcome.ending] ?? 0) + 1
    }
    return counts
  }

  /** The longest call among those that match. */
  maxLatency(filter: (outcome: Outcome<A>) => boolean): number {
    let max = 0
    for (const outcome of this.outcomes) {
      if (filter(outcome)) max = Math.max(max, outcome.end - outcome.start)
    }
    return max
  }
}

/**
 * Runs `fibers` fibers that each call `call` back to back (with `pauseMs` between calls, so a fast
 * failure path does not spin the CPU) until `stop` completes. Returns when every fiber has finished.
 */
export const hammer = <A, E extends { readonly _tag: string; readonly message: string }, R>(
  recorder: Recorder<A>,
  fibers: number,
  call: (fiber: number, n: number) => Effect.Effect<A, E, R>,
  stop: Effect.Effect<boolean>,
  pauseMs = 2
): Effect.Effect<void, never, R> =>
  Effect.forEach(
    Array.from({ length: fibers }, (_, i) => i),
    (fiber) =>
      Effect.gen(function*() {
        let n = 0
        while (!(yield* stop)) {
          yield* recorder.record(call(fiber, n++))
          if (pauseMs > 0) yield* Effect.sleep(Duration.millis(pauseMs))
        }
      }),
    { concurrency: "unbounded", discard: true }
  )

/** Polls `condition` every 20 ms until it holds; fails after `within`. */
export const eventually = (
  what: string,
  condition: () => boolean,
  within: Duration.DurationInput = "10 seconds"
): Effect.Effect<void, WaitTimeout> =>
  Effect.suspend(() => condition() ? Effect.void : Effect.fail(new WaitTimeout({ what }))).pipe(
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: within, onTimeout: () => new WaitTimeout({ what }) })
  )

/** A condition did not come true in time. */
export class WaitTimeout extends Data.TaggedError("WaitTimeout")<{ readonly what: string }> {
  override get message(): string {
    return `timed out waiting for ${this.what}`
  }
}

// ---------------------------------------------------------------------------------------------------------
// Worker processes
// ---------------------------------------------------------------------------------------------------------

/** A JSON line a worker printed. */
export interface WorkerMessage {
  readonly event: string
  readonly [field: string]: unknown
}

/** Starting or talking to a worker failed. */
export class WorkerFailure extends Data.TaggedError("WorkerFailure")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** A running worker process. */
export interface Worker {
  readonly child: ChildProcess
  /** Waits for the next message with `event` not yet taken; fails if the worker exits first. */
  readonly take: (event: string, within?: Duration.DurationInput) => Effect.Effect<WorkerMessage, WorkerFailure>
  /** Writes one line to the worker's stdin. */
  readonly send: (line: string) => Effect.Effect<void>
  /** Sends `signal` and waits until the process has exited. */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** True while the process runs. */
  readonly running: () => boolean
  /** What the worker wrote to stderr so far. */
  readonly stderr: () => string
}

/**
 * Starts `test/reliability/fixtures/worker.ts` with `config` (JSON in argv). SIGKILLed with the scope if
 * still running.
 */
export const startWorker = (config: unknown): Effect.Effect<Worker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(
          process.execPath,
          ["--import", "tsx", "test/reliability/fixtures/worker.ts", JSON.stringify(config)],
          { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] }
        )
      ),
      (child) =>
        Effect.sync(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        })
    )
    const messages: Array<WorkerMessage> = []
    let pending = ""
    let stderr = ""
    let exited = false
    child.stdout!.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8")
      let newline = pending.indexOf("\n")
      while (newline >= 0) {
        const line = pending.slice(0, newline).trim()
        pending = pending.slice(newline + 1)
        if (line.startsWith("{")) messages.push(JSON.parse(line) as WorkerMessage)
        newline = pending.indexOf("\n")
      }
    })
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.on("exit", () => (exited = true))
    // A worker killed before it reads its stdin must not crash the test with EPIPE.
    child.stdin!.on("error", () => {})

    const take: Worker["take"] = (event, within = "60 seconds") =>
      Effect.suspend(() => {
        const at = messages.findIndex((m) => m.event === event)
        if (at >= 0) return Effect.succeed(messages.splice(at, 1)[0]!)
        if (exited) {
          return Effect.fail(
            new WorkerFailure({ reason: `worker exited before "${event}" (stderr: ${stderr.trim() || "(empty)"})` })
          )
        }
        return Effect.fail(new WorkerFailure({ reason: "not yet" }))
      }).pipe(
        Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (e) => e.reason === "not yet" }),
        Effect.timeoutFail({
          duration: within,
          onTimeout: () => new WorkerFailure({ reason: `no "${event}" from the worker (stderr: ${stderr.trim()})` })
        })
      )

    return {
      child,
      take,
      send: (line) => Effect.sync(() => void child.stdin!.write(`${line}\n`)),
      kill: (signal) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill(signal)
        }),
      running: () => child.exitCode === null && child.signalCode === null,
      stderr: () => stderr
    }
  })
