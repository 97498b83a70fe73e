/**
 * Concurrency admission in a workflow: eight jobs start at once, but policy "workers" (a fixed ceiling
 * of 3) lets only three hold a slot; the others wait and retry. Each slot lives in a `Scope` and is
 * released when its job ends — also when the job fails (released as dropped). Then the unified policy
 * "jobs" (concurrency × a per-tenant rate) shows which axis bound a denial.
 *
 *   npm run example -- concurrency [--redis URL | --service host:port]
 */
import { Console, Data, Effect, Ref, Schedule } from "effect"
import { admitted, RateLimiter } from "throttlekit-effect"
import { isMain, runExample, runTag } from "./support.js"

const CEILING = 3

/** A job that broke (to show a failing holder releasing its slot). */
class JobFailed extends Data.TaggedError("JobFailed")<{ readonly reason: string }> {}

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const inFlight = yield* Ref.make(0)
  const peak = yield* Ref.make(0)

  /** One unit of work, counted while it runs. */
  const work = (id: number) =>
    Effect.acquireUseRelease(
      Ref.updateAndGet(inFlight, (n) => n + 1).pipe(
        Effect.tap((n) => Ref.update(peak, (p) => Math.max(p, n))),
        Effect.tap((n) => Console.log(`  job ${id} running (${n} in flight)`))
      ),
      () => Effect.sleep("40 millis"),
      () => Ref.update(inFlight, (n) => n - 1)
    )

  /** A job: admitted into "workers" for exactly its own duration; a denial waits and tries again. */
  const job = (id: number) =>
    work(id).pipe(
      admitted("workers", "pipeline"),
      Effect.retry({
        while: (error) => error._tag === "RateLimited",
        schedule: Schedule.spaced("15 millis").pipe(Schedule.intersect(Schedule.recurs(400)))
      })
    )

  yield* Console.log(`8 jobs start at once under "workers" (ceiling ${CEILING}):`)
  yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], job, { concurrency: "unbounded", discard: true })
  const highest = yield* Ref.get(peak)
  if (highest > CEILING) return yield* Effect.dieMessage(`peak ${highest} exceeded the ceiling ${CEILING}`)
  yield* Console.log(`all 8 jobs done; peak in flight ${highest} (ceiling ${CEILING})`)

  // The scoped admission itself: the slot is held until the scope closes, even when the work fails.
  const failed = yield* Effect.scoped(Effect.gen(function*() {
    const admission = yield* limiter.admit("workers", "pipeline")
    yield* Console.log(`scoped admit: held=${admission.held} lease=${admission.leaseId.slice(0, 8)}…`)
    return yield* new JobFailed({ reason: "the job broke" })
  })).pipe(Effect.catchTag("JobFailed", (error) => Effect.succeed(error.reason)))
  yield* Console.log(`a failing job released its slot as dropped (${failed})`)
  const free = yield* Effect.scoped(limiter.admit("workers", "pipeline"))
  yield* Console.log(`the next admission is ${free.held ? "held" : "denied"}: the slot came back`)

  // Unified rate x concurrency: a tenant may start 10 jobs per minute, 8 may run at once in total.
  const tenant = `tenant-${runTag()}`
  const bound = yield* Effect.gen(function*() {
    for (let i = 1; i <= 20; i++) {
      const admission = yield* Effect.scoped(limiter.admit("jobs", tenant))
      if (!admission.held) return { i, axis: admission.bindingAxis, retryAfterMs: admission.decision.retryAfterMs }
    }
    return undefined
  })
  yield* Console.log(
    bound === undefined
      ? `"jobs": 20 starts in a row were admitted`
      : `"jobs": start #${bound.i} for ${tenant} denied, bound by the ${bound.axis} axis (retry in ${bound.retryAfterMs} ms)`
  )
})

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => runExample(argv, {}, () => program)

if (isMain(import.meta.url)) run(process.argv.slice(2))
