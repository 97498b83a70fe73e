/**
 * Workload shapes for Effect programs, shaped as an Effect application calls us. One at a time: each
 * round is one whole measured loop inside one `runPromise` (no promise and no runtime entry per
 * operation). 64 in flight: a root fiber per operation, as an Effect HTTP server runs its requests.
 */
import { Cause, Effect, Exit, type Fiber } from "effect"
import { Latencies, nowNs, type RoundSample, WINDOW, windowed, type Workload } from "./harness.js"

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

/**
 * An Effect operation run in windows of `width` in flight, each in its own root fiber started with
 * `fork`, as an Effect HTTP server runs each request (`@effect/platform-node`'s server calls
 * `Runtime.runFork` per request): the same shape as the raw clients' `Promise.all` windows. Each
 * operation is timed from its start to its completion; a failed operation fails the round.
 *
 * (Forking the window's operations as children of one fiber, `Effect.forEach` with `concurrency`, also
 * joins each child's `FiberRef`s back into the parent: on this bench's VM that alone costs ~20 µs of CPU
 * per operation, more than a raw Redis call, and is not a cost a request-per-fiber server pays.)
 */
export const effectWindows = <E, R>(
  impl: string,
  fork: Fork<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  width = WINDOW,
  ours = true
): Workload =>
  windowed(impl, ours, width, (first, latencies) =>
    new Promise<void>((resolve, reject) => {
      let pending = width
      let failed = false
      for (let w = 0; w < width; w++) {
        const t0 = nowNs()
        fork(op(first + w)).addObserver((exit) => {
          latencies.push(nowNs() - t0)
          if (Exit.isFailure(exit) && !failed) {
            failed = true
            reject(new Error(`${impl} failed: ${Cause.pretty(exit.cause)}`))
          }
          if (--pending === 0) resolve()
        })
      }
    }))
