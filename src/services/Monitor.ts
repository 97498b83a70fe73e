/**
 * The `Monitor` service: a live view of a ThrottleKit server's decisions. `snapshot` reads what the
 * server's hub counted (per policy allowed/denied over a rolling minute, latency, top keys, guards, recent
 * denials), typed, with the full `raw_json` decoded by Schema (from a throttlekit-effect server); `watch`
 * follows denials as they happen.
 *
 * Provide it with `MonitorBackend.layer`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { RateLimiterError } from "../Errors.js"
import { DenialEvent, GuardSummary, MonitorMeta, PolicySummary, RawSnapshot } from "../monitor/Snapshot.js"

export {
  /** @since 0.1.0 */
  DenialEvent,
  /** @since 0.1.0 */
  GuardSummary,
  /** @since 0.1.0 */
  KeyCount,
  /** @since 0.1.0 */
  LatencySummary,
  /** @since 0.1.0 */
  MonitorMeta,
  /** @since 0.1.0 */
  PolicyDetail,
  /** @since 0.1.0 */
  PolicySummary,
  /** @since 0.1.0 */
  RawSnapshot
} from "../monitor/Snapshot.js"

/**
 * A snapshot: the typed fields of the wire message; `rawJson`, the full snapshot as the server sent it;
 * and `raw`, that full snapshot decoded (with totals and denials by axis) when the server is a
 * throttlekit-effect server (its `lensVersion` says so). Other servers (the reference
 * `throttlekit-server`) put their own internal shape in `raw_json`: `raw` is then `None` and `rawJson`
 * is left to the caller.
 *
 * @since 0.1.0
 * @category models
 */
export class Snapshot extends Schema.Class<Snapshot>("Snapshot")({
  meta: MonitorMeta,
  policies: Schema.Array(PolicySummary),
  guards: Schema.Array(GuardSummary),
  recentDenials: Schema.Array(DenialEvent),
  rawJson: Schema.String,
  raw: Schema.OptionFromSelf(RawSnapshot)
}) {}

/**
 * The server's `raw_json` did not decode as a snapshot: what was wrong with it.
 *
 * @since 0.1.0
 * @category errors
 */
export class SnapshotDecodeError extends Schema.TaggedError<SnapshotDecodeError>()("SnapshotDecodeError", {
  reason: Schema.String
}) {
  override get message(): string {
    return `the server's snapshot raw_json is not a valid snapshot: ${this.reason}`
  }
}

/**
 * The service interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorService {
  /** The server's snapshot now. */
  readonly snapshot: Effect.Effect<Snapshot, RateLimiterError | SnapshotDecodeError>
  /**
   * The server's live denials of `policy` (all policies when absent or ""). The stream runs until it is
   * interrupted (which cancels the call) or the server ends it (it shuts down).
   */
  readonly watch: (policy?: string) => Stream.Stream<DenialEvent, RateLimiterError>
}

/**
 * The `Monitor` tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class Monitor extends Context.Tag("throttlekit-effect/Monitor")<Monitor, MonitorService>() {}
