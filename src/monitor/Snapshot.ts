/**
 * The Monitor's data, as Schemas: the denial events the Watch stream carries and the snapshot
 * `GetSnapshot` answers. The server encodes the full snapshot (`RawSnapshot`) to the wire's `raw_json`
 * with these Schemas, and a client decodes it back with the same ones, so a malformed `raw_json` is a
 * typed decode error, never a guess.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The version our server reports as `lens_version` (a client tells our snapshots from other servers' by
 * its prefix).
 *
 * @since 0.1.0
 * @category constants
 */
export const LENS_VERSION = "throttlekit-effect/0.1.0"

/**
 * One denied decision: when, which policy and key, the binding axis ("" for a plain limiter; "rate" or
 * "concurrency" for an admitter), and the decision's limit, remaining and retry time.
 *
 * @since 0.1.0
 * @category models
 */
export class DenialEvent extends Schema.Class<DenialEvent>("DenialEvent")({
  at: Schema.Number,
  policy: Schema.String,
  key: Schema.String,
  axis: Schema.String,
  limit: Schema.Number,
  remaining: Schema.Number,
  retryAfterMs: Schema.Number
}) {}

/**
 * A key and how often it was seen.
 *
 * @since 0.1.0
 * @category models
 */
export const KeyCount = Schema.Struct({ key: Schema.String, count: Schema.Number })

/**
 * @since 0.1.0
 * @category models
 */
export type KeyCount = typeof KeyCount.Type

/**
 * Decision latency over the last samples: mean, nearest-rank p50 and p99, maximum (ms), and the sample
 * count (all zero when there are no samples).
 *
 * @since 0.1.0
 * @category models
 */
export const LatencySummary = Schema.Struct({
  avgMs: Schema.Number,
  p50Ms: Schema.Number,
  p99Ms: Schema.Number,
  maxMs: Schema.Number,
  n: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type LatencySummary = typeof LatencySummary.Type

/**
 * One policy's activity: decisions allowed and denied over the rolling window, the latest decision's
 * limit, latency, and the keys most often denied and requested.
 *
 * @since 0.1.0
 * @category models
 */
export const PolicySummary = Schema.Struct({
  name: Schema.String,
  kind: Schema.Literal("limiter", "admitter"),
  strategy: Schema.String,
  allowed: Schema.Number,
  denied: Schema.Number,
  limit: Schema.Number,
  latency: LatencySummary,
  topDenied: Schema.Array(KeyCount),
  topRequested: Schema.Array(KeyCount)
})

/**
 * @since 0.1.0
 * @category models
 */
export type PolicySummary = typeof PolicySummary.Type

/**
 * A concurrency guard: its current ceiling and the slots held. `share`, `lGlobal`, `nodes` and `fenced`
 * describe a fleet-distributed guard and are 0 / false for a local one.
 *
 * @since 0.1.0
 * @category models
 */
export const GuardSummary = Schema.Struct({
  name: Schema.String,
  limit: Schema.Number,
  inflight: Schema.Number,
  share: Schema.Number,
  lGlobal: Schema.Number,
  nodes: Schema.Number,
  fenced: Schema.Boolean
})

/**
 * @since 0.1.0
 * @category models
 */
export type GuardSummary = typeof GuardSummary.Type

/**
 * About the snapshot itself.
 *
 * @since 0.1.0
 * @category models
 */
export const MonitorMeta = Schema.Struct({
  generatedAt: Schema.Number,
  windowMs: Schema.Number,
  mode: Schema.Literal("process", "fleet"),
  lensVersion: Schema.String,
  nodeId: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export type MonitorMeta = typeof MonitorMeta.Type

/**
 * A policy in the full snapshot: the summary plus totals since the server started and denials by axis
 * (and, for a policy in shadow mode, its shadow denials).
 *
 * @since 0.1.0
 * @category models
 */
export const PolicyDetail = Schema.Struct({
  ...PolicySummary.fields,
  allowedTotal: Schema.Number,
  deniedTotal: Schema.Number,
  deniedByAxis: Schema.Record({ key: Schema.String, value: Schema.Number }),
  /**
   * Present (true) when the policy is in shadow mode: its would-be denials were answered allowed, and are
   * counted in `allowed` / `allowedTotal` (what callers got) and in `shadowDenied` / `shadowDeniedTotal`
   * (what the limit would have denied), never in `denied`. @since 0.3.0
   */
  shadow: Schema.optional(Schema.Boolean),
  /** Shadow-mode denials over the rolling window (a shadow-mode policy only). @since 0.3.0 */
  shadowDenied: Schema.optional(Schema.Number),
  /** Shadow-mode denials since the server started (a shadow-mode policy only). @since 0.3.0 */
  shadowDeniedTotal: Schema.optional(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export type PolicyDetail = typeof PolicyDetail.Type

/**
 * The full snapshot, as `raw_json` carries it.
 *
 * @since 0.1.0
 * @category models
 */
export const RawSnapshot = Schema.Struct({
  meta: MonitorMeta,
  policies: Schema.Array(PolicyDetail),
  guards: Schema.Array(GuardSummary),
  recentDenials: Schema.Array(DenialEvent),
  health: Schema.Struct({ backend: Schema.String })
})

/**
 * @since 0.1.0
 * @category models
 */
export type RawSnapshot = typeof RawSnapshot.Type

/**
 * `RawSnapshot` to and from its JSON text.
 *
 * @since 0.1.0
 * @category codecs
 */
export const RawSnapshotJson = Schema.parseJson(RawSnapshot)
