/**
 * The measuring core of the benchmarks: workloads (one implementation of one scenario), rounds that
 * alternate the implementations of a scenario, medians of the rounds' throughput and latency
 * percentiles from `process.hrtime.bigint()` timings.
 *
 * Each round's CPU time (`process.cpuUsage`, the whole bench process) is divided by its operations: the
 * client's own cost per operation, steadier than throughput on a busy machine, since the server's share
 * and the scheduler's wake-ups are not in it. The garbage collector's pauses in the round (Node's `gc`
 * performance entries) are divided the same way, to tell a round that collected more from one that ran
 * more code.
 *
 * A workload runs for a time budget and reports how many operations it completed and the latencies it
 * timed: per operation for network calls (serial or 64 in flight), per batch (divided by the batch size)
 * for in-process calls, where a clock read per operation would cost as much as the operation itself.
 */

import { PerformanceObserver } from "node:perf_hooks"

/** The latencies of one round, in ns per operation, grown as needed. */
export class Latencies {
  private values = new Float64Array(4096)
  private count = 0

  /** Records one latency (ns per operation). */
  push(ns: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.count++] = ns
  }

  /** Appends every latency of `other`. */
  append(other: Latencies): void {
    for (let i = 0; i < other.count; i++) this.push(other.values[i]!)
  }

  get size(): number {
    return this.count
  }

  /** The `p`-th percentile (0..100) by nearest rank, or NaN when nothing was recorded. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN
    const sorted = this.values.slice(0, this.count).sort()
    const rank = Math.min(this.count - 1, Math.max(0, Math.ceil((p / 100) * this.count) - 1))
    return sorted[rank]!
  }
}

/** What one round of a workload measured. */
export interface RoundSample {
  readonly ops: number
  readonly elapsedNs: number
  readonly latencies: Latencies
}

/** One implementation of one scenario. */
export interface Workload {
  /** The implementation's name in the table, e.g. "MemoryBackend.check". */
  readonly impl: string
  /** True for our code, false for an incumbent or a raw client (the table marks ours). */
  readonly ours: boolean
  /** Runs operations for about `budgetMs` and reports what it measured. */
  readonly round: (budgetMs: number) => Promise<RoundSample>
  /** One operation whose answer is checked (e.g. that a check was allowed); throws when it is wrong. */
  readonly verify?: () => Promise<void>
}

/** One row of the results: a workload's median throughput, latency percentiles, and CPU and GC per operation. */
export interface Result {
  readonly scenario: string
  readonly impl: string
  readonly ours: boolean
  readonly opsPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  /**
   * The bench process's CPU time (user + system, every thread) per operation, µs, median of the rounds:
   * what the caller's process pays, without the servers (Redis, our gRPC server) in their own processes.
   */
  readonly cpuUsPerOp: number
  /** The garbage collector's pauses of the bench process per operation, µs, median of the rounds. */
  readonly gcUsPerOp: number
  /** Throughput of each round, ops/s, in the order they ran. */
  readonly rounds: ReadonlyArray<number>
  /** CPU µs per operation of each round, in the same order as `rounds`. */
  readonly cpuRounds: ReadonlyArray<number>
  /** GC pause µs per operation of each round, in the same order as `rounds`. */
  readonly gcRounds: ReadonlyArray<number>
}

/** How long to measure. */
export interface Plan {
  readonly warmupMs: number
  readonly rounds: number
  readonly roundMs: number
}

/** The full plan and the `--quick` plan (the whole quick run stays under a minute). */
export const plans = {
  full: { warmupMs: 1000, rounds: 5, roundMs: 1000 },
  quick: { warmupMs: 400, rounds: 3, roundMs: 200 }
} satisfies Record<string, Plan>

/** The current time in ns, as a number (exact for far longer than any benchmark runs). */
export const nowNs = (): number => Number(process.hrtime.bigint())

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const collectGarbage = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) gc()
}

/**
 * The garbage collector's pause time (ms) since the last `take()`, from Node's `gc` performance entries
 * (delivered asynchronously: a round awaits a turn of the event loop before reading it).
 */
const gcPauses = (() => {
  let pausedMs = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pausedMs += entry.duration
  })
  observer.observe({ entryTypes: ["gc"] })
  return {
    take: (): number => {
      const taken = pausedMs
      pausedMs = 0
      return taken
    }
  }
})()

/** Resolves after pending callbacks (such as performance entries) have been delivered. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Writes a progress line to stderr. */
export const progress = (line: string): void => {
  process.stderr.write(`${line}\n`)
}

/** The operations a warm-up runs at least (time allowing): a network call takes thousands to settle. */
const WARMUP_OPERATIONS = 4000

/**
 * Warms `workload` up for `warmupMs` and, when that ran fewer than `WARMUP_OPERATIONS` operations, on
 * until it has run them or four times `warmupMs` has passed. A serial gRPC check here runs ~1 000 times a
 * second and the client and our server were still speeding up after a 1 s warm-up (its first round ran
 * 20–45 % below the later ones), while rows of millions of operations a second are warm well before.
 */
const warmUp = async (workload: Workload, warmupMs: number): Promise<void> => {
  const start = nowNs()
  let ops = (await workload.round(warmupMs)).ops
  const limit = start + 4 * warmupMs * 1e6
  while (ops < WARMUP_OPERATIONS && nowNs() < limit) {
    ops += (await workload.round(Math.min(warmupMs, (limit - nowNs()) / 1e6))).ops
  }
}

/**
 * Measures the workloads of one scenario side by side: each is verified, warmed up, then the rounds
 * alternate them (A B, then B A, ...), so drift of the machine (other load, thermal state) hits all of
 * them alike. Throughput is the median of the rounds; the percentiles pool every round's latencies.
 */
export const measure = async (
  scenario: string,
  workloads: ReadonlyArray<Workload>,
  plan: Plan
): Promise<Array<Result>> => {
  // One full collection for the scenario, before anything of it runs, not one per round: in a probe,
  // serial gRPC checks ran 25–35 % slower in the second after a `gc()` (see the README's bench notes).
  collectGarbage()
  for (const workload of workloads) {
    if (workload.verify !== undefined) await workload.verify()
  }
  for (const workload of workloads) await warmUp(workload, plan.warmupMs)
  const perWorkload = workloads.map(() => ({
    rounds: [] as Array<number>,
    cpuRounds: [] as Array<number>,
    gcRounds: [] as Array<number>,
    latencies: new Latencies()
  }))
  for (let round = 0; round < plan.rounds; round++) {
    const order = workloads.map((_, i) => i)
    if (round % 2 === 1) order.reverse()
    for (const i of order) {
      await settle()
      gcPauses.take()
      const cpuBefore = process.cpuUsage()
      const sample = await workloads[i]!.round(plan.roundMs)
      const cpu = process.cpuUsage(cpuBefore)
      await settle()
      const gcMs = gcPauses.take()
      const slot = perWorkload[i]!
      slot.rounds.push(sample.ops / (sample.elapsedNs / 1e9))
      slot.cpuRounds.push((cpu.user + cpu.system) / sample.ops)
      slot.gcRounds.push((gcMs * 1000) / sample.ops)
      slot.latencies.append(sample.latencies)
    }
  }
  const results = workloads.map((workload, i): Result => {
    const slot = perWorkload[i]!
    return {
      scenario,
      impl: workload.impl,
      ours: workload.ours,
      opsPerSec: median(slot.rounds),
      p50Us: slot.latencies.percentile(50) / 1000,
      p99Us: slot.latencies.percentile(99) / 1000,
      cpuUsPerOp: median(slot.cpuRounds),
      gcUsPerOp: median(slot.gcRounds),
      rounds: slot.rounds,
      cpuRounds: slot.cpuRounds,
      gcRounds: slot.gcRounds
    }
  })
  for (const result of results) {
    progress(
      `  ${scenario.padEnd(24)} ${result.impl.padEnd(34)} ${formatOps(result.opsPerSec).padStart(12)} ops/s`
    )
  }
  return results
}

/** Ops/s with thousands separators. */
export const formatOps = (opsPerSec: number): string => Math.round(opsPerSec).toLocaleString("en-US")

// ---------------------------------------------------------------------------------------------------
// Workload shapes for plain functions and promises (the incumbents, the raw clients, the engine).
// The Effect shapes live in effectWorkloads.ts.
// ---------------------------------------------------------------------------------------------------

/** The last result of a synchronous operation: kept so the JIT cannot drop an unused result's allocation. */
export let sink: unknown = undefined

/** A synchronous operation, timed per batch of `batch` operations. */
export const syncBatched = (
  impl: string,
  ours: boolean,
  op: (i: number) => unknown,
  batch = 1000
): Workload => {
  let i = 0
  return {
    impl,
    ours,
    round: (budgetMs) => {
      const latencies = new Latencies()
      const start = nowNs()
      const deadline = start + budgetMs * 1e6
      let ops = 0
      let t = start
      while (t < deadline) {
        for (let b = 0; b < batch; b++) sink = op(i++)
        const t1 = nowNs()
        latencies.push((t1 - t) / batch)
        t = t1
        ops += batch
      }
      return Promise.resolve({ ops, elapsedNs: t - start, latencies })
    }
  }
}

/** An asynchronous operation awaited one at a time, timed per batch (for in-process promises). */
export const promiseBatched = (
  impl: string,
  ours: boolean,
  op: (i: number) => Promise<unknown>,
  batch = 1000
): Workload => {
  let i = 0
  return {
    impl,
    ours,
    round: async (budgetMs) => {
      const latencies = new Latencies()
      const start = nowNs()
      const deadline = start + budgetMs * 1e6
      let ops = 0
      let t = start
      while (t < deadline) {
        for (let b = 0; b < batch; b++) await op(i++)
        const t1 = nowNs()
        latencies.push((t1 - t) / batch)
        t = t1
        ops += batch
      }
      return { ops, elapsedNs: t - start, latencies }
    }
  }
}

/** An asynchronous operation awaited one at a time, each timed (a batch of one). */
export const promiseSerial = (impl: string, ours: boolean, op: (i: number) => Promise<unknown>): Workload =>
  promiseBatched(impl, ours, op, 1)

/** The number of operations in flight in the concurrent scenarios. */
export const CALLERS = 64

/** What one caller of a concurrent round does: runs operations until `deadline` (ns), timing each. */
export type Caller = (deadline: number, next: () => number, record: (ns: number) => void) => Promise<void>

/**
 * Rounds of `width` concurrent callers (64 in flight), each calling one operation after another until the
 * round's budget has passed: the shape of 64 clients with a request always outstanding. Every operation is
 * timed from its start to its completion; a round ends when its last caller has finished its last call.
 */
export const concurrentCallers = (impl: string, ours: boolean, caller: Caller, width = CALLERS): Workload => {
  let i = 0
  const next = () => i++
  return {
    impl,
    ours,
    round: async (budgetMs) => {
      const latencies = new Latencies()
      const start = nowNs()
      const deadline = start + budgetMs * 1e6
      let ops = 0
      const record = (ns: number) => {
        latencies.push(ns)
        ops++
      }
      const callers: Array<Promise<void>> = []
      for (let c = 0; c < width; c++) callers.push(caller(deadline, next, record))
      await Promise.all(callers)
      return { ops, elapsedNs: nowNs() - start, latencies }
    }
  }
}

/** An asynchronous operation called by 64 concurrent callers (see `concurrentCallers`). */
export const promiseCallers = (
  impl: string,
  ours: boolean,
  op: (i: number) => Promise<unknown>,
  width = CALLERS
): Workload =>
  concurrentCallers(impl, ours, async (deadline, next, record) => {
    let t = nowNs()
    while (t < deadline) {
      await op(next())
      const t1 = nowNs()
      record(t1 - t)
      t = t1
    }
  }, width)
