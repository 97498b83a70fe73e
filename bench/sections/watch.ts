/**
 * Watch: what idle Monitor Watch streams cost a server's decisions under a flood of denials. Two servers
 * (`throttlekit-effect serve`, memory store, each in its own process, the same policy, Watch streams
 * allowed up to 1000): one with no Watch stream, one with 1000 idle Watch streams (raw grpc-js calls that
 * never read, over 20 connections: each call's HTTP/2 window fills and stays full). The rounds alternate
 * between the two servers. Every check is denied (a fixed window of 1 per hour), so every decision is a
 * denial event for the Monitor.
 *
 * - `watch.check`: 64 callers, each sending raw Check calls on one key, one after another;
 * - `watch.checkMany`: 16 callers, raw CheckMany calls of 100 keys (100 denials per call).
 *
 * `watch.checkP50Ratio` is the Check p50 with 1000 idle streams over the p50 without (target ≤ 1.5),
 * `watch.checkManyRatio` the CheckMany throughput with them over without. The servers' memory is read
 * from /proc after the rounds: RSS now and peak RSS (VmHWM), and `watch.rssDeltaMB`, the peak RSS of the
 * server holding the streams minus the other's.
 */
import { create } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import { readFileSync } from "node:fs"
import { deserializer, methodPath, serializer } from "../../src/grpc/codec.js"
import { RateLimiter as RateLimiterRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import { openIdleWatches } from "../../test/support/rawWire.js"
import { type ChildServer, startChildServer } from "../childServer.js"
import { measure, type Plan, progress, promiseCallers, type Result } from "../harness.js"
import { type Comparison, ratio, resultOf, type Section, type SectionOutcome, type Skipped } from "../section.js"

const POLICY = "flood"
const CONFIG = `version: 1
limiters:
  ${POLICY}:
    strategy: fixedWindow
    limit: 1
    windowMs: 3600000
`
/** The idle Watch streams of the second server. */
const STREAMS = 1000
const WITHOUT = "0 Watch streams"
const WITH = `${STREAMS} idle Watch streams`
const MANY_KEYS = Array.from({ length: 100 }, (_, i) => `many-${i}`)

/** A raw grpc-js client sending Check and CheckMany of the flood policy, each answer checked denied. */
const floodClient = (target: string) => {
  const client = new grpc.Client(target, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 })
  const unary = <I, O>(path: string, serialize: (i: I) => Buffer, deserialize: (b: Buffer) => O, request: I) =>
    new Promise<O>((resolve, reject) => {
      client.makeUnaryRequest(path, serialize, deserialize, request, new grpc.Metadata(), (error, response) => {
        if (error !== null || response === undefined) reject(error ?? new Error("empty response"))
        else resolve(response)
      })
    })
  const check = RateLimiterRpc.method.check
  const checkMany = RateLimiterRpc.method.checkMany
  const checkRequest = create(check.input, { policy: POLICY, key: "one", cost: 1n })
  const manyRequest = create(checkMany.input, { policy: POLICY, keys: MANY_KEYS, cost: 1n })
  const checkSerialize = serializer(check.input)
  const checkDeserialize = deserializer(check.output)
  const manySerialize = serializer(checkMany.input)
  const manyDeserialize = deserializer(checkMany.output)
  return {
    check: () => unary(methodPath(check), checkSerialize, checkDeserialize, checkRequest),
    checkMany: () => unary(methodPath(checkMany), manySerialize, manyDeserialize, manyRequest),
    close: () => client.close()
  }
}

type FloodClient = ReturnType<typeof floodClient>

/** The server's resident memory now and at its peak (MB), from /proc; undefined off Linux. */
const memoryOf = (pid: number): { readonly rssMb: number; readonly peakMb: number } | undefined => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN)
    return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 }
  } catch {
    return undefined
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const args = ["--max-watch-streams", String(STREAMS)]
  progress("  watch: starting two servers")
  const servers: Array<ChildServer> = await Promise.all([
    startChildServer(60_000, { config: CONFIG, args }),
    startChildServer(60_000, { config: CONFIG, args })
  ])
  const [quiet, watched] = servers as [ChildServer, ChildServer]
  const clients: Array<FloodClient> = []
  const watches = openIdleWatches(watched.target, STREAMS, { perConnection: 50 })
  try {
    const toQuiet = floodClient(quiet.target)
    const toWatched = floodClient(watched.target)
    clients.push(toQuiet, toWatched)
    // The one allowed check of each key (a limit of 1 per hour): from here on everything is denied.
    await Promise.all([toQuiet.check(), toQuiet.checkMany(), toWatched.check()])
    // Denials until every stream has been written to (its headers arrived): all 1000 are being served.
    for (let i = 0; i < 600 && watches.started() < STREAMS; i++) {
      await toWatched.checkMany()
      await sleep(10)
    }
    const refused = [...watches.ended().entries()].map(([code, n]) => `${grpc.status[code]} ${n}`)
    if (watches.started() < STREAMS) {
      throw new Error(`only ${watches.started()} of ${STREAMS} Watch streams started (ended: ${refused.join(", ")})`)
    }
    progress(`  watch: ${watches.started()} idle Watch streams open`)
    const verify = (client: FloodClient) => () =>
      client.check().then((response) => {
        if (response.decision?.allowed !== false) throw new Error("a flood check was allowed")
      })
    const results: Array<Result> = []
    results.push(
      ...(await measure("watch.check", [
        { ...promiseCallers(WITHOUT, true, () => toQuiet.check()), verify: verify(toQuiet) },
        { ...promiseCallers(WITH, true, () => toWatched.check()), verify: verify(toWatched) }
      ], plan))
    )
    results.push(
      ...(await measure("watch.checkMany", [
        promiseCallers(WITHOUT, true, () => toQuiet.checkMany(), 16),
        promiseCallers(WITH, true, () => toWatched.checkMany(), 16)
      ], plan))
    )
    const still = STREAMS - [...watches.ended().values()].reduce((a, b) => a + b, 0)
    progress(`  watch: ${still} of ${STREAMS} idle Watch streams still open after the flood`)
    const p50Without = resultOf(results, "watch.check", WITHOUT).p50Us
    const p50With = resultOf(results, "watch.check", WITH).p50Us
    const comparisons: Array<Comparison> = [
      {
        name: "watch.checkP50Ratio",
        value: p50With / p50Without,
        unit: "x",
        detail: `Check p50 (64 callers, denied) with ${STREAMS} idle Watch streams / with none: ` +
          `${(p50With / 1000).toFixed(2)} / ${(p50Without / 1000).toFixed(2)} ms`,
        target: { op: "<=", value: 1.5 },
        headline: true
      },
      {
        ...ratio(results, "watch.checkManyRatio", "watch.checkMany", WITH, WITHOUT),
        target: { op: ">=", value: 1 / 1.5 }
      }
    ]
    const skipped: Array<Skipped> = []
    const quietMemory = memoryOf(quiet.pid)
    const watchedMemory = memoryOf(watched.pid)
    if (quietMemory === undefined || watchedMemory === undefined) {
      skipped.push({ name: "watch.rssMB", reason: "no /proc/<pid>/status on this platform" })
    } else {
      for (const [label, memory] of [["0", quietMemory], [String(STREAMS), watchedMemory]] as const) {
        comparisons.push({
          name: `watch.rssMB.streams${label}`,
          value: memory.rssMb,
          unit: "MB",
          detail: `RSS of the server with ${label} idle Watch streams after the rounds (peak ` +
            `${memory.peakMb.toFixed(0)} MB)`,
          headline: false
        })
      }
      comparisons.push({
        name: "watch.rssDeltaMB",
        value: watchedMemory.peakMb - quietMemory.peakMb,
        unit: "MB",
        detail: `peak RSS with ${STREAMS} idle Watch streams minus peak RSS with none`,
        headline: false
      })
    }
    return { results, comparisons, skipped }
  } finally {
    watches.close()
    for (const client of clients) client.close()
    await Promise.all(servers.map((server) => server.close()))
  }
}

/** The watch section. */
export const watch: Section = { name: "watch", run }
