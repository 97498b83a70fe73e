/**
 * Workload shapes for Effect programs. Each round is one whole measured loop inside one
 * `runPromise` (the bench is the application, and this is how an Effect application calls us): no
 * promise per operation, no runtime entry per operation.
 */
import { Effect } from "effect"
import { Latencies, nowNs, type RoundSample, WINDOW, type Workload } from "./harness.js"

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

/**
 * An Effect operation run in windows of `width` in flight (`Effect.forEach` with `concurrency: width`,
 * the same shape as the raw clients' `Promise.all` windows), each operation timed from its start to its
 * completion.
 */
export const effectWindows = <E, R>(
  impl: string,
  run: Run<R>,
  op: (i: number) => Effect.Effect<unknown, E, R>,
  width = WINDOW,
  ours = true
): Workload => {
  let i = 0
  const slots = Array.from({ length: width }, (_, w) => w)
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
          const base = i
          i += width
          yield* Effect.forEach(slots, (w) =>
            Effect.suspend(() => {
              const t0 = nowNs()
              return Effect.map(op(base + w), () => latencies.push(nowNs() - t0))
            }), { concurrency: width, discard: true })
          t = nowNs()
          ops += width
        }
        return { ops, elapsedNs: t - start, latencies } satisfies RoundSample
      }))
  }
}
