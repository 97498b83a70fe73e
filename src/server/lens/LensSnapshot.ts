/**
 * What the Lens page reads from `GET /api/snapshot`, as a Schema: the Monitor's picture (per policy the
 * rolling counts, totals, limit and top denied keys; the guards; the last denials) plus the history of
 * allowed and denied decisions the Lens samples, as counts per interval.
 *
 * The history is a list of interval ends, `at`, the first interval starting at `since`: interval `i` runs
 * from `at[i - 1]` (or `since`) to `at[i]`, and each policy's `allowed[i]` / `denied[i]` counts the
 * decisions in it. The intervals are `sampleMs` long, except the last, which runs to the snapshot's time
 * (the live one, shorter).
 *
 * @since 0.3.0
 */
import * as Schema from "effect/Schema"
import { DenialEvent, GuardSummary, KeyCount, MonitorMeta } from "../../monitor/Snapshot.js"

/**
 * One policy as the Lens shows it.
 *
 * @since 0.3.0
 * @category models
 */
export const LensPolicy = Schema.Struct({
  name: Schema.String,
  kind: Schema.Literal("limiter", "admitter"),
  strategy: Schema.String,
  /** The limit of the latest decision. */
  limit: Schema.Number,
  /** Decisions allowed over the Monitor's rolling window (`meta.windowMs`). */
  allowed: Schema.Number,
  /** Decisions denied over the Monitor's rolling window. */
  denied: Schema.Number,
  allowedTotal: Schema.Number,
  deniedTotal: Schema.Number,
  /** The keys most often denied since the server started (lower bounds). */
  topDenied: Schema.Array(KeyCount),
  /** Decisions allowed in each interval of the history. */
  allowedHistory: Schema.Array(Schema.Number),
  /** Decisions denied in each interval of the history. */
  deniedHistory: Schema.Array(Schema.Number)
})

/**
 * @since 0.3.0
 * @category models
 */
export type LensPolicy = typeof LensPolicy.Type

/**
 * The page's whole picture.
 *
 * @since 0.3.0
 * @category models
 */
export const LensSnapshot = Schema.Struct({
  meta: MonitorMeta,
  /** The length of a history interval, in ms. */
  sampleMs: Schema.Number,
  /** How far back the history reaches once full, in ms (the chart's width). */
  historyMs: Schema.Number,
  /** The start of the first interval of the history. */
  since: Schema.Number,
  /** The end of each interval of the history (the last: the snapshot's time). */
  at: Schema.Array(Schema.Number),
  policies: Schema.Array(LensPolicy),
  guards: Schema.Array(GuardSummary),
  /** The last denials, oldest first. */
  recentDenials: Schema.Array(DenialEvent),
  /** Live denial streams open now, and the most the Lens serves at once. */
  streams: Schema.Struct({ open: Schema.Number, max: Schema.Number })
})

/**
 * @since 0.3.0
 * @category models
 */
export type LensSnapshot = typeof LensSnapshot.Type

/**
 * `LensSnapshot` to and from its JSON text.
 *
 * @since 0.3.0
 * @category codecs
 */
export const LensSnapshotJson = Schema.parseJson(LensSnapshot)
