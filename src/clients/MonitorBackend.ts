/**
 * The Monitor client (a client layer, not a door): the `Monitor` service over gRPC, `Monitor.GetSnapshot`
 * and `Monitor.Watch` on a ThrottleKit server. The channel (`grpc/channel.ts`) is scoped and closed with
 * the layer. A snapshot call carries a deadline (1 s by default); a watch has none (it runs until
 * interrupted, which cancels the call on the wire). The secret, when given, travels as
 * `x-monitor-secret` call metadata.
 *
 * Everything the server sends is decoded with Schema: a snapshot whose fields do not match, whose
 * `raw_json` is not JSON, or (from a throttlekit-effect server, which names itself in `lens_version`)
 * whose `raw_json` is not a `RawSnapshot`, fails with `SnapshotDecodeError`; a watch message without its
 * event with `BackendError` — never a defect. Another server's `raw_json` (its own internal shape) is
 * kept as text.
 *
 * Layers: `layer(options)` and `layerConfig(config)` (the same options, each a `Config`; the secret as
 * `Config.redacted`). There is no `layerFile`: a client holds no policies, the server does.
 *
 * @since 0.1.0
 */
import type * as grpc from "@grpc/grpc-js"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { BackendError, type InvalidArgument, type RateLimiterError } from "../Errors.js"
import { acquireChannel, secretMetadata } from "../grpc/channel.js"
import { serverStream, unary } from "../grpc/client.js"
import { fromInt64 } from "../grpc/convert.js"
import type * as pb from "../grpc/generated/throttlekit_pb.js"
import { Monitor as MonitorRpc } from "../grpc/generated/throttlekit_pb.js"
import { toRateLimiterError } from "../grpc/status.js"
import { DenialEvent, LENS_VERSION, RawSnapshot } from "../monitor/Snapshot.js"
import { Monitor, type MonitorService, Snapshot, SnapshotDecodeError } from "../services/Monitor.js"

/**
 * Options of the Monitor client.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorBackendOptions {
  /** The server, as a gRPC target: "host:port", "dns:///host:port", "unix:/path". */
  readonly target: string
  /** The server's monitor secret, sent as `x-monitor-secret` (needed off loopback, or when the server has one). */
  readonly secret?: Redacted.Redacted<string>
  /** The deadline of a snapshot call in ms (default 1000). */
  readonly deadlineMs?: number
  /** Channel credentials (default insecure). */
  readonly credentials?: grpc.ChannelCredentials
  /** Extra grpc-js channel options. */
  readonly channelOptions?: grpc.ChannelOptions
}

const BACKEND = "monitor"

const denialFromWire = (d: pb.DenialEvent) => ({
  at: fromInt64(d.at),
  policy: d.policy,
  key: d.key,
  axis: d.axis,
  limit: fromInt64(d.limit),
  remaining: fromInt64(d.remaining),
  retryAfterMs: fromInt64(d.retryAfterMs)
})

const keyCounts = (counts: ReadonlyArray<pb.KeyCount>) =>
  counts.map((kc) => ({ key: kc.key, count: fromInt64(kc.count) }))

const latencyFromWire = (l: pb.LatencySummary | undefined) =>
  l === undefined
    ? { avgMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, n: 0 }
    : { avgMs: l.avgMs, p50Ms: l.p50Ms, p99Ms: l.p99Ms, maxMs: l.maxMs, n: fromInt64(l.n) }

const parseRawJson = Schema.decodeUnknownEither(Schema.parseJson())
const decodeRaw = Schema.decodeUnknownEither(RawSnapshot)

/** How a throttlekit-effect server names itself in `lens_version` (its `raw_json` is then ours). */
const LENS_PREFIX = LENS_VERSION.slice(0, LENS_VERSION.indexOf("/") + 1)
const decodeSnapshot = Schema.decodeUnknownEither(Snapshot)

/** The longest description of a decoding failure kept in the error (the server's payload is not echoed whole). */
const MAX_REASON_CHARS = 1000

const describeFailure = (error: ParseResult.ParseError): string => {
  try {
    const text = ParseResult.TreeFormatter.formatErrorSync(error)
    return text.length <= MAX_REASON_CHARS ? text : `${text.slice(0, MAX_REASON_CHARS)}… (truncated)`
  } catch {
    // Formatting recurses into the offending value; one nested deep enough overflows the stack.
    return "the value is nested too deeply to describe"
  }
}

const decodeFailure = (what: string, error: ParseResult.ParseError) =>
  new SnapshotDecodeError({ reason: `${what}: ${describeFailure(error)}` })

/**
 * A wire snapshot as a `Snapshot`: the typed fields and the decoded `raw_json`, both checked by Schema.
 *
 * @since 0.1.0
 * @category decoding
 * @internal
 */
export const snapshotFromWire = (
  snapshot: pb.Snapshot | undefined
): Effect.Effect<Snapshot, SnapshotDecodeError> => {
  if (snapshot === undefined) return Effect.fail(new SnapshotDecodeError({ reason: "the response has no snapshot" }))
  const json = parseRawJson(snapshot.rawJson)
  if (Either.isLeft(json)) return Effect.fail(decodeFailure("raw_json is not JSON", json.left))
  const meta = snapshot.meta
  let raw: Option.Option<RawSnapshot> = Option.none()
  if (meta !== undefined && meta.lensVersion.startsWith(LENS_PREFIX)) {
    const decoded = decodeRaw(json.right)
    if (Either.isLeft(decoded)) return Effect.fail(decodeFailure("raw_json", decoded.left))
    raw = Option.some(decoded.right)
  }
  const typed = decodeSnapshot({
    meta: meta === undefined ? undefined : {
      generatedAt: fromInt64(meta.generatedAt),
      windowMs: fromInt64(meta.windowMs),
      mode: meta.mode,
      lensVersion: meta.lensVersion,
      nodeId: meta.nodeId
    },
    policies: snapshot.policies.map((p) => ({
      name: p.name,
      kind: p.kind,
      strategy: p.strategy,
      allowed: fromInt64(p.allowed),
      denied: fromInt64(p.denied),
      limit: fromInt64(p.limit),
      latency: latencyFromWire(p.latency),
      topDenied: keyCounts(p.topDenied),
      topRequested: keyCounts(p.topRequested)
    })),
    guards: snapshot.guards.map((g) => ({
      name: g.name,
      limit: fromInt64(g.limit),
      inflight: fromInt64(g.inflight),
      share: g.share,
      lGlobal: fromInt64(g.lGlobal),
      nodes: fromInt64(g.nodes),
      fenced: g.fenced
    })),
    recentDenials: snapshot.recentDenials.map(denialFromWire),
    rawJson: snapshot.rawJson,
    raw
  })
  return Either.isLeft(typed) ? Effect.fail(decodeFailure("snapshot", typed.left)) : Effect.succeed(typed.right)
}

/**
 * Builds the Monitor client over a scoped channel to `options.target`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MonitorBackendOptions): Effect.Effect<MonitorService, InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const service = `throttlekit-server at ${options.target}`
    const client = yield* acquireChannel(options)
    const deadlineMs = options.deadlineMs ?? 1000
    const metadata = secretMetadata("x-monitor-secret", options.secret)

    const snapshot: MonitorService["snapshot"] = Effect.gen(function*() {
      const response = yield* unary(client, MonitorRpc.method.getSnapshot, {}, {
        deadlineMs,
        metadata: metadata.clone()
      }).pipe(Effect.mapError((error) => toRateLimiterError(error, { service, policy: "", operation: "snapshot" })))
      return yield* snapshotFromWire(response.snapshot)
    }).pipe(Effect.withSpan("Monitor.snapshot"))

    const watch = (policy: string = ""): Stream.Stream<DenialEvent, RateLimiterError> =>
      serverStream(client, MonitorRpc.method.watch, { policy }, { metadata: metadata.clone() }).pipe(
        Stream.mapError((error): RateLimiterError =>
          toRateLimiterError(error, { service, policy, operation: "watch" })
        ),
        Stream.mapEffect((message) =>
          message.denial === undefined
            ? Effect.fail(
              new BackendError({ backend: BACKEND, code: "PROTOCOL", detail: "a watch message has no denial" })
            )
            : Effect.succeed(new DenialEvent(denialFromWire(message.denial), true))
        )
      )

    return { snapshot, watch }
  })

/**
 * The Monitor client as a layer.
 *
 * @example
 * ```ts
 * import { Console, Effect, Redacted, Stream } from "effect"
 * import { Monitor, MonitorBackend } from "throttlekit-effect/monitor"
 *
 * export const main = Effect.gen(function*() {
 *   const monitor = yield* Monitor
 *   const snapshot = yield* monitor.snapshot // the last minute, per policy
 *   for (const policy of snapshot.policies) {
 *     yield* Console.log(`${policy.name}: ${policy.allowed} allowed, ${policy.denied} denied`)
 *   }
 *   // then the denials of policy "api", as they happen
 *   yield* monitor.watch("api").pipe(Stream.runForEach((denial) => Console.log(`denied ${denial.key}`)))
 * }).pipe(Effect.provide(MonitorBackend.layer({
 *   target: "127.0.0.1:50051",
 *   secret: Redacted.make("monitor-secret") // needed unless the client is on loopback
 * })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MonitorBackendOptions): Layer.Layer<Monitor, InvalidArgument> =>
  Layer.scoped(Monitor, make(options))

/**
 * The Monitor client configured from `Config`: the options of `layer`, each a `Config` (`Config.succeed`
 * for a fixed value), e.g. `layerConfig({ target: Config.string("THROTTLEKIT_TARGET"), secret:
 * Config.redacted("THROTTLEKIT_MONITOR_SECRET") })`. A missing or invalid value fails the layer with
 * Effect's `ConfigError`; then it is built as `layer` builds it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<MonitorBackendOptions>
): Layer.Layer<Monitor, EffectConfigError.ConfigError | InvalidArgument> =>
  Layer.scoped(Monitor, Effect.flatMap(Config.unwrap(config), make))
