/**
 * Waiting: the Memory door's waiting admission (`admitted(policy, key, { wait })`) against an Effect
 * `Semaphore` of the same size, in-process. 64 callers (long-lived fibers) each run one job after
 * another through a ceiling of 5; a job holds its slot across one `Effect.yieldNow()`, so 59 callers are
 * always waiting and every job goes through the wait queue. The semaphore is the floor of an in-process
 * wait queue: it knows nothing of leases, rate axes or deadlines. Ours pays, per job, the front's
 * validation, a lease (acquire and release) in the store, the admission scope, the line's bookkeeping and
 * a deadline timer per waiter.
 */
import { Effect, ManagedRuntime } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { AdmitterPolicy } from "../../src/Policy.js"
import { admitted, RateLimiter } from "../../src/services/RateLimiter.js"
import { effectCallers } from "../effectWorkloads.js"
import { measure, type Plan } from "../harness.js"
import { ratio, type Section, type SectionOutcome } from "../section.js"

const CEILING = 5
const WAITING = `admitted(wait), ceiling ${CEILING} (Memory)`
const SEMAPHORE = `Effect Semaphore(${CEILING}).withPermits(1)`

const pool: AdmitterPolicy = {
  kind: "admitter",
  name: "pool",
  prefix: "pool",
  maxKeys: 10,
  concurrency: {
    algorithm: "fixed",
    minLimit: CEILING,
    maxLimit: CEILING,
    initialLimit: CEILING,
    backoffRatio: 0.9,
    smoothing: 0.2,
    tolerance: 2,
    rttWindow: 10
  }
}

/** The job both sides run while holding a slot: one yield, so the slot is held across a suspension. */
const job = Effect.yieldNow()

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const runtime = ManagedRuntime.make(MemoryBackend.layer({ policies: [pool], leaseTtlMs: 60_000 }))
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const semaphore = await runtime.runPromise(Effect.makeSemaphore(CEILING))
    const waiting = Effect.provideService(
      job.pipe(admitted("pool", "jobs", { wait: "1 minute" })),
      RateLimiter,
      limiter
    )
    const ours = {
      ...effectCallers(WAITING, runtime.runFork, () => waiting),
      verify: () => runtime.runPromise(waiting)
    }
    const floor = effectCallers(SEMAPHORE, runtime.runFork, () => semaphore.withPermits(1)(job), false)
    const results = await measure("waiting.c64", [ours, floor], plan)
    return {
      results,
      comparisons: [ratio(results, "waiting.c64.vsSemaphore", "waiting.c64", WAITING, SEMAPHORE)],
      skipped: []
    }
  } finally {
    await runtime.dispose()
  }
}

/** The waiting section. */
export const waiting: Section = { name: "waiting", run }
