/**
 * `npm run bench`: every door measured side by side with what a user would use instead (and with the raw
 * client underneath, the limit of what a wrapper can reach), in one run.
 *
 *   npm run bench                   the human table (stdout), progress on stderr
 *   npm run bench -- --json         one JSON object (one line) on stdout, everything human on stderr
 *                                   (npm prints its own banner on stdout first: add --silent to npm run)
 *   npm run bench -- --quick        short rounds: the whole run in under a minute
 *   npm run bench -- --only redis   only the named sections (comma separated)
 *
 * Targets are benchmarks, never tests: a missed target is reported, and the run still exits 0. It exits 1
 * only when a section failed to run.
 */
import * as os from "node:os"
import { closeSharedChildServer, sharedChildServer } from "./childServer.js"
import { formatOps, type Plan, plans, progress, type Result } from "./harness.js"
import { type Comparison, meets, type Section, type SectionOutcome, type Skipped } from "./section.js"
import { footprint } from "./sections/footprint.js"
import { leasing } from "./sections/leasing.js"
import { memory } from "./sections/memory.js"
import { redis } from "./sections/redis.js"
import { redisCluster } from "./sections/redisCluster.js"
import { service } from "./sections/service.js"
import { waiting } from "./sections/waiting.js"
import { watch } from "./sections/watch.js"

const sections: ReadonlyArray<Section> = [memory, waiting, redis, redisCluster, service, leasing, footprint, watch]

/** The headline comparisons of the issue, in the order the table lists them, with their targets. */
const HEADLINES: ReadonlyArray<string> = [
  "memory.vsRlf",
  "memory.serviceVsEffectFloor",
  "memory.serviceVsExperimental",
  "memory.leases.cost80kVs1k",
  "redis.c64.vsRaw",
  "redis.c64.vsRlf",
  "redis.c64.vsExperimental",
  "redis.c64.p99VsRaw",
  "redis.checkMany100VsChecks",
  "redis-cluster.c64.clusterVsSingle",
  "redis-cluster.checkMany100VsChecks",
  "redis-cluster.replicaAcksCost",
  "service.c64.vsRaw",
  "service.serial.vsRaw",
  "service.checkMany100VsChecks",
  "leasing.tier2VsTier1",
  "leasing.twoTierVsStrict",
  "leasing.spendNs",
  "watch.checkP50Ratio"
]

/** The section that measures a headline: the name's first segment, unless listed here. */
const HEADLINE_SECTION: Readonly<Record<string, string>> = {
  "redis.checkMany100VsChecks": "redis-cluster"
}

const sectionOf = (headline: string): string => HEADLINE_SECTION[headline] ?? headline.split(".")[0]!

interface Options {
  readonly json: boolean
  readonly quick: boolean
  readonly only: ReadonlySet<string> | undefined
}

const parseArgs = (argv: ReadonlyArray<string>): Options => {
  let json = false
  let quick = false
  let only: Set<string> | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--json") json = true
    else if (arg === "--quick") quick = true
    else if (arg === "--only") only = new Set((argv[++i] ?? "").split(",").filter((s) => s !== ""))
    else if (arg.startsWith("--only=")) only = new Set(arg.slice(7).split(",").filter((s) => s !== ""))
    else {
      process.stderr.write(`unknown option ${arg}\nusage: npm run bench -- [--json] [--quick] [--only a,b]\n`)
      process.exit(2)
    }
  }
  return { json, quick, only }
}

/** The machine the run measured. */
export interface Machine {
  readonly cpus: number
  readonly model: string
  readonly node: string
  readonly platform: string
  readonly totalMemGb: number
  /** The 1, 5 and 15 minute load averages when the run started (other load skews absolute numbers). */
  readonly loadAvg: ReadonlyArray<number>
}

const machine = (): Machine => {
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    model: cpus[0]?.model.trim() ?? "unknown",
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    totalMemGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAvg: os.loadavg().map((n) => Math.round(n * 100) / 100)
  }
}

const peakRssMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024)

const round = (value: number, digits: number): number => {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

const formatComparison = (comparison: Comparison): string =>
  comparison.unit === "x" ? `${comparison.value.toFixed(2)}x` : `${comparison.value.toFixed(1)} ${comparison.unit}`

const formatTarget = (comparison: Comparison): string => {
  const target = comparison.target
  if (target === undefined) return ""
  const value = comparison.unit === "x" ? `${target.value}x` : `${target.value} ${comparison.unit}`
  return `${target.op === ">=" ? "≥" : "≤"} ${value}`
}

const formatUs = (us: number): string => (Number.isNaN(us) ? "-" : us < 10 ? us.toFixed(3) : us.toFixed(1))

/** The human report. */
const table = (
  info: Machine,
  plan: Plan,
  quick: boolean,
  results: ReadonlyArray<Result>,
  comparisons: ReadonlyArray<Comparison>,
  skipped: ReadonlyArray<Skipped>,
  failed: ReadonlyArray<Skipped>
): string => {
  const lines: Array<string> = []
  lines.push(
    `machine: ${info.cpus} × ${info.model}, ${info.totalMemGb} GB, node ${info.node}, ${info.platform}, ` +
      `load average ${info.loadAvg.join(" / ")} at start`,
    `plan: ${
      quick ? "quick" : "full"
    } (warm-up ${plan.warmupMs} ms, ${plan.rounds} alternated rounds of ${plan.roundMs} ms, median)`,
    ""
  )
  const header = `${"scenario".padEnd(18)} ${"implementation".padEnd(40)} ${"ops/s".padStart(13)} ${
    "p50 µs".padStart(9)
  } ${"p99 µs".padStart(9)} ${"cpu µs/op".padStart(10)} ${"gc µs/op".padStart(9)}`
  lines.push(header, "-".repeat(header.length))
  let last = ""
  for (const r of results) {
    if (last !== "" && r.scenario !== last) lines.push("")
    last = r.scenario
    lines.push(
      `${r.scenario.padEnd(18)} ${(r.ours ? "* " : "  ").concat(r.impl).padEnd(40)} ${
        formatOps(r.opsPerSec).padStart(13)
      } ${formatUs(r.p50Us).padStart(9)} ${formatUs(r.p99Us).padStart(9)} ${formatUs(r.cpuUsPerOp).padStart(10)} ${
        formatUs(r.gcUsPerOp).padStart(9)
      }`
    )
  }
  lines.push(
    "(* = throttlekit-effect; p50/p99 per operation: per-batch timings for in-process rows; cpu µs/op: the",
    " bench process's CPU time per operation, every thread, without the servers' processes; gc µs/op: its",
    " garbage collector's pauses per operation)",
    ""
  )
  lines.push("targets", "-------")
  for (const name of HEADLINES) {
    const comparison = comparisons.find((c) => c.name === name)
    if (comparison !== undefined && comparison.target === undefined) {
      // An informational headline: reported, never met nor missed.
      lines.push(
        `${name.padEnd(34)} ${
          formatComparison(comparison).padStart(10)
        }   informational (no target)   ${comparison.detail}`
      )
      continue
    }
    if (comparison !== undefined) {
      lines.push(
        `${name.padEnd(34)} ${formatComparison(comparison).padStart(10)}   target ${
          formatTarget(comparison).padEnd(8)
        } ${meets(comparison) ? "met" : "MISSED"}   ${comparison.detail}`
      )
      continue
    }
    const gap = [...skipped, ...failed].find((s) => s.name === name)
    const why = gap?.reason ?? `not measured (section ${sectionOf(name)})`
    lines.push(`${name.padEnd(34)} ${"-".padStart(10)}   ${why}`)
  }
  const others = comparisons.filter((c) => !c.headline)
  if (others.length > 0) {
    lines.push("", "other ratios (ours / theirs, higher is better)", "----------------------------------------------")
    for (const c of others) lines.push(`${c.name.padEnd(34)} ${formatComparison(c).padStart(10)}   ${c.detail}`)
  }
  const extraGaps = [...skipped, ...failed].filter((s) => !HEADLINES.includes(s.name))
  if (extraGaps.length > 0) {
    lines.push("", "not measured", "------------")
    for (const s of extraGaps) lines.push(`${s.name.padEnd(34)} ${s.reason}`)
  }
  lines.push("", `peak RSS of the bench process: ${peakRssMb()} MB`)
  return lines.join("\n")
}

const main = async (): Promise<number> => {
  const options = parseArgs(process.argv.slice(2))
  const plan = options.quick ? plans.quick : plans.full
  const info = machine()
  const selected = sections.filter((s) => options.only === undefined || options.only.has(s.name))
  progress(`throttlekit-effect bench (${options.quick ? "quick" : "full"}): ${selected.map((s) => s.name).join(", ")}`)

  // --quick: start the server (seconds of TypeScript compilation) while the first sections run, to stay
  // under a minute; a full run starts it when the service section needs it, so nothing else runs beside
  // the in-process measurements.
  if (options.quick && selected.some((s) => s.name === "service" || s.name === "leasing")) {
    sharedChildServer().catch(() => undefined)
  }

  const results: Array<Result> = []
  const comparisons: Array<Comparison> = []
  const skipped: Array<Skipped> = []
  const failed: Array<Skipped> = []
  for (const section of selected) {
    progress(`${section.name}:`)
    const started = Date.now()
    let outcome: SectionOutcome
    try {
      outcome = await section.run(plan)
    } catch (error) {
      const reason = `failed: ${error instanceof Error ? error.message : String(error)}`
      progress(`  ${section.name} ${reason}`)
      const owned = HEADLINES.filter((h) => sectionOf(h) === section.name)
      for (const name of owned) failed.push({ name, reason })
      if (owned.length === 0) failed.push({ name: section.name, reason })
      continue
    }
    results.push(...outcome.results)
    comparisons.push(...outcome.comparisons)
    skipped.push(...outcome.skipped)
    for (const s of outcome.skipped) progress(`  ${s.name}: ${s.reason}`)
    progress(`  (${((Date.now() - started) / 1000).toFixed(1)} s)`)
  }

  await closeSharedChildServer()
  const report = table(info, plan, options.quick, results, comparisons, skipped, failed)
  if (options.json) {
    process.stderr.write(`\n${report}\n`)
    const ratios: Record<string, number> = {}
    for (const name of HEADLINES) {
      const comparison = comparisons.find((c) => c.name === name)
      if (comparison !== undefined) ratios[name] = round(comparison.value, 3)
    }
    const json = {
      machine: info,
      plan: { mode: options.quick ? "quick" : "full", ...plan },
      results: results.map((r) => ({
        scenario: r.scenario,
        impl: r.impl,
        opsPerSec: Math.round(r.opsPerSec),
        p50Us: round(r.p50Us, 3),
        p99Us: round(r.p99Us, 3),
        cpuUsPerOp: round(r.cpuUsPerOp, 3),
        gcUsPerOp: round(r.gcUsPerOp, 3),
        // Each round's numbers, in the order they ran, so a run whose medians look odd can be read round
        // by round afterwards (a slow phase of the machine, one round's GC).
        roundsOpsPerSec: r.rounds.map((value) => Math.round(value)),
        roundsCpuUsPerOp: r.cpuRounds.map((value) => round(value, 1)),
        roundsGcUsPerOp: r.gcRounds.map((value) => round(value, 1))
      })),
      ratios,
      targets: Object.fromEntries(
        comparisons.filter((c) => c.headline && c.target !== undefined).map((c) => [
          c.name,
          { target: formatTarget(c), met: meets(c) }
        ])
      ),
      otherRatios: Object.fromEntries(comparisons.filter((c) => !c.headline).map((c) => [c.name, round(c.value, 3)])),
      skipped: Object.fromEntries([...skipped, ...failed].map((s) => [s.name, s.reason])),
      peakRssMb: peakRssMb()
    }
    // One line, so `npm run bench -- --json | tail -n 1` isolates it from npm's banner (or use
    // `npm run --silent bench -- --json`).
    process.stdout.write(`${JSON.stringify(json)}\n`)
  } else {
    process.stdout.write(`\n${report}\n`)
  }
  return failed.length > 0 ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
    process.exit(1)
  }
)
