/**
 * The `throttlekit.v1.Monitor` service over a hub: `GetSnapshot` answers the typed snapshot plus the full
 * one as `raw_json`; `Watch(policy)` streams live denials ("" = every policy), capped at 500 events per
 * second per stream and 5000 per second for all of them (see `WatchFeed.ts`). A slow reader loses
 * events (counted by the hub) and never holds memory or slows a decision: each stream reads the hub's
 * ring at its own pace, at most 16 events at a time, and once its call's buffer is full waits for it to
 * drain before it reads more (served as a `PullStream`: one fiber and a scope per stream).
 *
 * At most `maxWatchStreams` Watch streams are open at once (default 100); one more is answered
 * RESOURCE_EXHAUSTED at once. Each event is encoded once, into a `WatchResponse` that every stream sending
 * it shares (its bytes ride as the message's unknown field 1, which protobuf-es writes back verbatim: the
 * same bytes as encoding `denial` per write, without the per-write encoding). The stream ends when the
 * call is cancelled or the server shuts down. Auth as the Fleet door, with `x-monitor-secret`; a refused
 * Watch fails before it streams anything (and before the cap is counted).
 *
 * Memory, worst case: the hub's ring, 1024 × E, plus per open stream under 27 KB of call and runtime
 * state and 33 × E (up to 16 events in hand and grpc-js's buffer of 16 messages plus one frame, which may
 * outlive the ring), where E is an event with its shared message: about 0.4 KB for a short key, at most
 * 12.5 KB (a 4096-byte key). With the default 100 streams: under 5 MB for short keys, 57 MB at worst.
 *
 * @since 0.1.0
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf"
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire"
import * as grpc from "@grpc/grpc-js"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { toInt64 } from "../../grpc/convert.js"
import {
  DenialEventSchema,
  Monitor,
  type SnapshotSchema,
  type WatchResponse,
  WatchResponseSchema
} from "../../grpc/generated/throttlekit_pb.js"
import { statusError } from "../../grpc/status.js"
import {
  type DenialEvent,
  type KeyCount,
  type LatencySummary,
  type RawSnapshot,
  RawSnapshotJson
} from "../../monitor/Snapshot.js"
import { authorize, monitorAuth } from "../Auth.js"
import { implement, pullStream, type ServedService } from "../Service.js"
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
  /** The most Watch streams open at once (default `DEFAULT_MAX_WATCH_STREAMS`; 0 refuses every Watch). */
  readonly maxWatchStreams?: number
}

/**
 * The default cap on Watch streams open at once, per server.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_MAX_WATCH_STREAMS = 100

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
 * A denial event as a ready `WatchResponse`, encoded once: the `DenialEvent` bytes are carried as the
 * message's unknown field 1 (length-delimited), which serializing the message writes back verbatim. The
 * bytes on the wire are those of `{ denial: denialToWire(event) }`.
 *
 * @since 0.2.0
 * @category encoding
 */
export const encodedWatchResponse = (event: DenialEvent): WatchResponse => {
  const denial = toBinary(DenialEventSchema, create(DenialEventSchema, denialToWire(event)))
  const message = create(WatchResponseSchema)
  message.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: new BinaryWriter().bytes(denial).finish() }]
  return message
}

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
  const maxStreams = options.maxWatchStreams ?? DEFAULT_MAX_WATCH_STREAMS
  let streams = 0
  // Each event's message, built by the first stream that sends it, shared by the others, and gone with
  // the event once no ring or write buffer holds it.
  const encoded = new WeakMap<DenialEvent, WatchResponse>()
  const messageOf = (event: DenialEvent): WatchResponse => {
    let message = encoded.get(event)
    if (message === undefined) {
      message = encodedWatchResponse(event)
      encoded.set(event, message)
    }
    return message
  }
  const tooMany = statusError(
    grpc.status.RESOURCE_EXHAUSTED,
    `too many Watch streams: this server serves at most ${maxStreams} at once`
  )
  /** A Watch slot, held for the life of the stream's scope; none left is RESOURCE_EXHAUSTED. */
  const slot = Effect.acquireRelease(
    Effect.suspend(() => {
      if (streams >= maxStreams) return Effect.fail(tooMany)
      streams++
      return Effect.void
    }),
    () =>
      Effect.sync(() => {
        streams--
      })
  )
  return implement(Monitor, {
    getSnapshot: (_request, context) =>
      Effect.zipRight(
        authorize(auth, context),
        Effect.map(options.hub.snapshot, (snapshot) => ({ snapshot: snapshotToWire(snapshot) }))
      ),
    watch: (request, context) =>
      pullStream(
        Effect.zipRight(
          Effect.zipRight(authorize(auth, context), slot),
          Effect.map(options.hub.watchPull(request.policy), Effect.map(Chunk.map(messageOf)))
        )
      )
  })
}
