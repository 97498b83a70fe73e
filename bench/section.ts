/**
 * What a benchmark section hands back: its rows, its comparisons (each a ratio or a measured cost with
 * its target), and what it could not measure and why.
 */
import type { Plan, Result } from "./harness.js"

/** A target: the value must be at least, or at most, `value`. */
export interface Target {
  readonly op: ">=" | "<="
  readonly value: number
}

/** One comparison of the run. `headline` ones are the named ratios (the JSON `ratios`). */
export interface Comparison {
  readonly name: string
  readonly value: number
  readonly unit: "x" | "ns" | "ms" | "MB"
  readonly detail: string
  readonly target?: Target
  readonly headline: boolean
}

/** A measurement a section could not make, and why. */
export interface Skipped {
  readonly name: string
  readonly reason: string
}

/** The outcome of one section. */
export interface SectionOutcome {
  readonly results: ReadonlyArray<Result>
  readonly comparisons: ReadonlyArray<Comparison>
  readonly skipped: ReadonlyArray<Skipped>
}

/** A section: a name and how to run it under a plan. */
export interface Section {
  readonly name: string
  readonly run: (plan: Plan) => Promise<SectionOutcome>
}

/** True when `comparison` meets its target (or has none). */
export const meets = (comparison: Comparison): boolean => {
  const target = comparison.target
  if (target === undefined) return true
  return target.op === ">=" ? comparison.value >= target.value : comparison.value <= target.value
}

/** The result of `impl` in `scenario` among `results` (throws when it is missing: a bench bug). */
export const resultOf = (results: ReadonlyArray<Result>, scenario: string, impl: string): Result => {
  const found = results.find((r) => r.scenario === scenario && r.impl === impl)
  if (found === undefined) throw new Error(`no result for ${scenario} / ${impl}`)
  return found
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * The throughput ratio `ours / theirs` in one scenario: the median of the rounds' ratios. Round k of
 * each side ran back to back (the order alternates), so each ratio compares the two under the same
 * machine load; the median of those is steadier than the ratio of the two medians on a busy machine.
 */
export const pairedRatio = (ours: Result, theirs: Result): number =>
  median(ours.rounds.map((ops, k) => ops / theirs.rounds[k]!))

/**
 * A CPU ratio in one scenario: `theirs`'s CPU per operation over `ours`'s (so, like a throughput ratio,
 * higher is better: 1.10 means ours spends a tenth less of the caller's CPU per operation), paired by
 * round as `pairedRatio`.
 */
export const cpuRatio = (
  results: ReadonlyArray<Result>,
  name: string,
  scenario: string,
  ours: string,
  theirs: string
): Comparison => {
  const mine = resultOf(results, scenario, ours)
  const other = resultOf(results, scenario, theirs)
  return {
    name,
    value: median(mine.cpuRounds.map((cpu, k) => other.cpuRounds[k]! / cpu)),
    unit: "x",
    detail: `${scenario}: client CPU per operation, ${theirs} / ${ours}`,
    headline: false
  }
}

/** A throughput ratio `ours / theirs` in one scenario, as a comparison. */
export const ratio = (
  results: ReadonlyArray<Result>,
  name: string,
  scenario: string,
  ours: string,
  theirs: string,
  options: { readonly target?: Target; readonly headline?: boolean } = {}
): Comparison => ({
  name,
  value: pairedRatio(resultOf(results, scenario, ours), resultOf(results, scenario, theirs)),
  unit: "x",
  detail: `${scenario}: ${ours} / ${theirs}`,
  headline: options.headline ?? false,
  ...(options.target === undefined ? {} : { target: options.target })
})
