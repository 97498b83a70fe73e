/**
 * The `throttlekit.v1.Monitor` service over a hub: `GetSnapshot` answers the typed snapshot plus the full
 * one as `raw_json`; `Watch(policy)` streams live denials ("" = every policy), capped at 500 events per
 * second per stream. A slow reader loses its oldest unread events (the hub's buffer slides) and never
 * holds memory or blocks a decision. The stream ends when the call is cancelled or the server shuts down.
 * Auth as the Fleet door, with `x-monitor-secret`; a refused Watch fails before it streams anything.
 *
 * @since 0.1.0
 */
import type { MessageInitShape } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { toInt64 } from "../../grpc/convert.js"
import { type DenialEventSchema, Monitor, type SnapshotSchema } from "../../grpc/generated/throttlekit_pb.js"
import {
  type DenialEvent,
  type KeyCount,
  type LatencySummary,
  type RawSnapshot,
  RawSnapshotJson
} from "../../monitor/Snapshot.js"
import { authorize, monitorAuth } from "../Auth.js"
import { implement, type ServedService } from "../Service.js"
import type { Hub } from "./Hub.js"

/**
 * Options of the Monitor service.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorRpcOptions {
  readonly hub: Hub
  /** The secret every caller must present (`x-monitor-secret`); none means loopback callers only. */
  readonly secret: Option.Option<Redacted.Redacted<string>>
}

/**
 * A denial event as its wire message.
 *
 * @since 0.1.0
 * @category encoding
 */
export const denialToWire = (event: DenialEvent): MessageInitShape<typeof DenialEventSchema> => ({
  at: toInt64(event.at),
  policy: event.policy,
  key: event.key,
  axis: event.axis,
  limit: toInt64(event.limit),
  remaining: toInt64(event.remaining),
  retryAfterMs: toInt64(event.retryAfterMs)
})

const keyCounts = (counts: ReadonlyArray<KeyCount>) => counts.map((kc) => ({ key: kc.key, count: toInt64(kc.count) }))

const latencyToWire = (l: LatencySummary) => ({
  avgMs: l.avgMs,
  p50Ms: l.p50Ms,
  p99Ms: l.p99Ms,
  maxMs: l.maxMs,
  n: toInt64(l.n)
})

const encodeJson = Schema.encodeSync(RawSnapshotJson)

/**
 * A snapshot as its wire message: the typed fields and the whole snapshot as `raw_json`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const snapshotToWire = (snapshot: RawSnapshot): MessageInitShape<typeof SnapshotSchema> => ({
  meta: {
    generatedAt: toInt64(snapshot.meta.generatedAt),
    windowMs: toInt64(snapshot.meta.windowMs),
    mode: snapshot.meta.mode,
    lensVersion: snapshot.meta.lensVersion,
    nodeId: snapshot.meta.nodeId
  },
  policies: snapshot.policies.map((p) => ({
    name: p.name,
    kind: p.kind,
    strategy: p.strategy,
    allowed: toInt64(p.allowed),
    denied: toInt64(p.denied),
    limit: toInt64(p.limit),
    latency: latencyToWire(p.latency),
    topDenied: keyCounts(p.topDenied),
    topRequested: keyCounts(p.topRequested)
  })),
  guards: snapshot.guards.map((g) => ({
    name: g.name,
    limit: toInt64(g.limit),
    inflight: toInt64(g.inflight),
    share: g.share,
    lGlobal: toInt64(g.lGlobal),
    nodes: toInt64(g.nodes),
    fenced: g.fenced
  })),
  recentDenials: snapshot.recentDenials.map(denialToWire),
  rawJson: encodeJson(snapshot)
})

/**
 * The Monitor service over `options.hub`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MonitorRpcOptions): ServedService => {
  const auth = monitorAuth(options.secret)
  return implement(Monitor, {
    getSnapshot: (_request, context) =>
      Effect.zipRight(
        authorize(auth, context),
        Effect.map(options.hub.snapshot, (snapshot) => ({ snapshot: snapshotToWire(snapshot) }))
      ),
    watch: (request, context) =>
      Stream.unwrap(
        Effect.as(
          authorize(auth, context),
          Stream.map(options.hub.watch(request.policy), (event) => ({ denial: denialToWire(event) }))
        )
      )
  })
}
