/**
 * Workload shapes for Effect programs, shaped as an Effect application calls us. One at a time: each
 * round is one whole measured loop inside one `runPromise` (no promise and no runtime entry per
 * operation). 64 in flight: 64 caller fibers, each calling one operation after another.
 */
import { Cause, Effect, Exit, type Fiber } from "effect"
import { concurrentCallers, Latencies, nowNs, type RoundSample, type Workload } from "./harness.js"

/** Runs an Effect program to a promise (a `ManagedRuntime`'s `runPromise`, or `Effect.runPromise`). */
export type Run<R> = <A, E>(effect: Effect.Effect<A, E, R>) => Promise<A>

/** An Effect operation run one at a time, timed per batch of `batch` (for in-process calls). */
export const effectBatched = <E, R>(
  impl: string,
  run: Run<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  batch = 1000,
  ours = true
): Workload => {
  let i = 0
  return {
    impl,
    ours,
    round: (budgetMs) =>
      run(Effect.gen(function*() {
        const latencies = new Latencies()
        const start = nowNs()
        const deadline = start + budgetMs * 1e6
        let ops = 0
        let t = start
        while (t < deadline) {
          for (let b = 0; b < batch; b++) yield* op(i++)
          const t1 = nowNs()
          latencies.push((t1 - t) / batch)
          t = t1
          ops += batch
        }
        return { ops, elapsedNs: t - start, latencies } satisfies RoundSample
      }))
  }
}

/** An Effect operation run one at a time, each timed (a batch of one). */
export const effectSerial = <E, R>(
  impl: string,
  run: Run<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  ours = true
): Workload => effectBatched(impl, run, op, 1, ours)

/** Starts an Effect as a root fiber (a `ManagedRuntime`'s `runFork`, or `Effect.runFork`). */
export type Fork<R> = <A, E>(effect: Effect.Effect<A, E, R>) => Fiber.RuntimeFiber<A, unknown>

/** Awaits a root fiber's exit; a failure rejects with the pretty cause, naming the workload. */
const exitOf = <A>(impl: string, fiber: Fiber.RuntimeFiber<A, unknown>): Promise<void> =>
  new Promise((resolve, reject) => {
    fiber.addObserver((exit) => {
      if (Exit.isFailure(exit)) reject(new Error(`${impl} failed: ${Cause.pretty(exit.cause)}`))
      else resolve()
    })
  })

/**
 * An Effect operation called by 64 concurrent callers, each a root fiber started with `fork` that calls
 * the operation one after another until the round's budget has passed: the shape of 64 requests in
 * flight, each already running in its fiber when it reaches the limiter (as in an Effect HTTP server),
 * and the same shape as the Promise callers of the raw clients. A failed operation fails the round.
 */
export const effectCallers = <E, R>(
  impl: string,
  fork: Fork<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  ours = true
): Workload =>
  concurrentCallers(impl, ours, (deadline, next, record) =>
    exitOf(
      impl,
      fork(Effect.gen(function*() {
        let t = nowNs()
        while (t < deadline) {
          yield* op(next())
          const t1 = nowNs()
          record(t1 - t)
          t = t1
        }
      }))
    ))

/**
 * Like `effectCallers`, but each call starts a new root fiber (what a server pays per request when it
 * starts a fiber for each): the difference from `effectCallers` is the Effect runtime's cost of starting
 * and finishing a fiber, which any Effect code pays alike, and not the limiter's.
 */
export const effectCallersFiberPerCall = <E, R>(
  impl: string,
  fork: Fork<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  ours = true
): Workload =>
  concurrentCallers(impl, ours, async (deadline, next, record) => {
    let t = nowNs()
    while (t < deadline) {
      await exitOf(impl, fork(op(next())))
      const t1 = nowNs()
      record(t1 - t)
      t = t1
    }
  })
