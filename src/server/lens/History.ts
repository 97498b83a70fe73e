/**
 * The Lens's history: per policy, how many decisions were allowed and denied in each interval of the last
 * minutes. A fiber of the Lens's scope reads the hub's totals every `sampleMs` and keeps the differences
 * in a ring of `samples` intervals (10 minutes of 5 s intervals by default): a fixed amount of memory per
 * policy (two numbers per interval), whatever the traffic. A picture adds the live interval, from the
 * last sample to the snapshot's time, so a decision shows at once, not at the next sample.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { DenialEvent, RawSnapshot } from "../../monitor/Snapshot.js"
import type { Hub } from "../monitor/Hub.js"
import type { LensPolicy, LensSnapshot } from "./LensSnapshot.js"

/**
 * Options of the history.
 *
 * @since 0.3.0
 * @category models
 */
export interface HistoryOptions {
  /** The length of an interval, in ms. */
  readonly sampleMs: number
  /** How many intervals are kept (the oldest is dropped past it). */
  readonly samples: number
}

/**
 * The history's one operation.
 *
 * @since 0.3.0
 * @category models
 */
export interface History {
  /**
   * The page's picture: `snapshot` (read from the hub now), the history up to its time, the last
   * `recent` denials, and the live streams.
   */
  readonly picture: (
    snapshot: RawSnapshot,
    recent: number,
    streams: LensSnapshot["streams"]
  ) => LensSnapshot
}

/** One policy's counts per interval, and its totals at the last sample. */
class Series {
  readonly allowed: Float64Array
  readonly denied: Float64Array
  lastAllowed: number
  lastDenied: number
  constructor(capacity: number, allowedTotal: number, deniedTotal: number) {
    this.allowed = new Float64Array(capacity)
    this.denied = new Float64Array(capacity)
    this.lastAllowed = allowedTotal
    this.lastDenied = deniedTotal
  }
}

/**
 * Starts sampling `hub` (a first read now is the baseline); the sampling stops with the scope.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (hub: Hub, options: HistoryOptions): Effect.Effect<History, never, Scope.Scope> =>
  Effect.gen(function*() {
    const capacity = Math.max(1, Math.floor(options.samples))
    const sampleMs = Math.max(1, options.sampleMs)
    const at = new Float64Array(capacity)
    const series = new Map<string, Series>()
    let count = 0
    let next = 0
    const baseline = yield* hub.snapshot
    let since = baseline.meta.generatedAt
    for (const p of baseline.policies) series.set(p.name, new Series(capacity, p.allowedTotal, p.deniedTotal))

    /**
     * Closes an interval at the snapshot's time. The series follow a reloaded server's policies: an added
     * one counts all its decisions (its statistics start empty), a removed one is dropped, and one whose
     * counts restarted (its statistics were renewed) counts from zero.
     */
    const record = (snapshot: RawSnapshot) => {
      const totals = new Map(snapshot.policies.map((p) => [p.name, p] as const))
      for (const name of series.keys()) if (!totals.has(name)) series.delete(name)
      for (const p of snapshot.policies) if (!series.has(p.name)) series.set(p.name, new Series(capacity, 0, 0))
      for (const [name, s] of series) {
        const p = totals.get(name)!
        const restarted = p.allowedTotal < s.lastAllowed || p.deniedTotal < s.lastDenied
        s.allowed[next] = p.allowedTotal - (restarted ? 0 : s.lastAllowed)
        s.denied[next] = p.deniedTotal - (restarted ? 0 : s.lastDenied)
        s.lastAllowed = p.allowedTotal
        s.lastDenied = p.deniedTotal
      }
      // Full: the oldest interval goes, and the next one (which starts where it ended) becomes the first.
      if (count === capacity) since = at[next]!
      at[next] = snapshot.meta.generatedAt
      next = (next + 1) % capacity
      count = Math.min(count + 1, capacity)
    }

    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(Effect.sleep(sampleMs), Effect.flatMap(hub.snapshot, (s) => Effect.sync(() => record(s))))
      )
    )

    const picture: History["picture"] = (snapshot, recent, streams) => {
      const first = count < capacity ? 0 : next
      const ends: Array<number> = []
      for (let k = 0; k < count; k++) ends.push(at[(first + k) % capacity]!)
      const lastEnd = count === 0 ? since : ends[ends.length - 1]!
      const live = snapshot.meta.generatedAt > lastEnd
      if (live) ends.push(snapshot.meta.generatedAt)
      const policies: Array<LensPolicy> = snapshot.policies.map((p) => {
        const s = series.get(p.name)
        const allowedHistory: Array<number> = []
        const deniedHistory: Array<number> = []
        for (let k = 0; k < count; k++) {
          const i = (first + k) % capacity
          allowedHistory.push(s === undefined ? 0 : s.allowed[i]!)
          deniedHistory.push(s === undefined ? 0 : s.denied[i]!)
        }
        if (live) {
          allowedHistory.push(p.allowedTotal - (s?.lastAllowed ?? 0))
          deniedHistory.push(p.deniedTotal - (s?.lastDenied ?? 0))
        }
        return {
          name: p.name,
          kind: p.kind,
          strategy: p.strategy,
          limit: p.limit,
          allowed: p.allowed,
          denied: p.denied,
          allowedTotal: p.allowedTotal,
          deniedTotal: p.deniedTotal,
          topDenied: p.topDenied,
          allowedHistory,
          deniedHistory
        }
      })
      const denials: ReadonlyArray<DenialEvent> = snapshot.recentDenials
      return {
        meta: snapshot.meta,
        sampleMs,
        historyMs: sampleMs * capacity,
        since,
        at: ends,
        policies,
        guards: snapshot.guards,
        recentDenials: denials.slice(Math.max(0, denials.length - recent)),
        streams
      }
    }

    return { picture }
  })
