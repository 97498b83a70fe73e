/**
 * The server's `/metrics` page: the Monitor hub's snapshot, the server's own counters and a few live
 * gauges, as Prometheus text. The names the reference server documents keep their names and labels
 * (`throttlekit_allowed_total`, `throttlekit_denied_total`, `throttlekit_denied_by_axis_total`,
 * `throttlekit_limit`, `throttlekit_latency_p50_ms`, `throttlekit_latency_p99_ms`,
 * `throttlekit_guard_inflight`, `throttlekit_guard_limit`, `throttlekit_guard_fenced`); the counters
 * here are true counters (decisions since the server started, never decreasing), where the reference
 * reports its rolling 60 s window under the same names. The rest is ours: `throttlekit_server_info`,
 * `throttlekit_rpc_errors_total`, `throttlekit_store_outage_answers_total`, `throttlekit_degraded_answers_total`
 * and `throttlekit_store_degraded` (insurance), `throttlekit_shadow_denied_total`
 * (the denials a shadow-mode policy answered allowed; they are also in `throttlekit_allowed_total`),
 * `throttlekit_grpc_connections`, `throttlekit_watch_streams`, `throttlekit_watch_dropped_total`.
 *
 * Aggregates only, as the reference's: no series is labelled by a request key (the Monitor door, which
 * carries keys, has its own auth).
 *
 * @since 0.3.0
 */
import type { RawSnapshot } from "../../monitor/Snapshot.js"
import type { FailMode } from "../FailMode.js"
import type { ServerCounters } from "./Counters.js"
import { Exposition } from "./Exposition.js"

/**
 * Who the server is, for `throttlekit_server_info`.
 *
 * @since 0.3.0
 * @category models
 */
export interface ServerInfo {
  /** This package's version. */
  readonly version: string
  readonly region: string
  readonly nodeId: string
  /** `memory` or `redis`. */
  readonly store: string
  readonly failMode: FailMode
}

/**
 * What is read live at each scrape, beside the snapshot.
 *
 * @since 0.3.0
 * @category models
 */
export interface LiveGauges {
  /** gRPC connections open now. */
  readonly connections: number
  /** Monitor Watch streams subscribed now. */
  readonly watchStreams: number
  /** Denials Watch streams have dropped so far. */
  readonly watchDropped: number
}

/**
 * The page for one scrape.
 *
 * @since 0.3.0
 * @category rendering
 */
export const render = (
  snapshot: RawSnapshot,
  counters: ServerCounters,
  info: ServerInfo,
  live: LiveGauges
): string => {
  const out = new Exposition()
  out.family("throttlekit_server_info", "gauge", "The server: package version, region, node id, store, fail mode.")
    .sample("throttlekit_server_info", {
      version: info.version,
      region: info.region,
      node_id: info.nodeId,
      store: info.store,
      fail_mode: info.failMode
    }, 1)

  const policies = snapshot.policies
  out.family("throttlekit_allowed_total", "counter", "Decisions allowed since the server started, per policy.")
  for (const p of policies) out.sample("throttlekit_allowed_total", { policy: p.name }, p.allowedTotal)
  out.family("throttlekit_denied_total", "counter", "Decisions denied since the server started, per policy.")
  for (const p of policies) out.sample("throttlekit_denied_total", { policy: p.name }, p.deniedTotal)
  out.family(
    "throttlekit_shadow_denied_total",
    "counter",
    "Decisions a shadow-mode policy would have denied (answered allowed, counted in allowed_total), per policy."
  )
  for (const p of policies) {
    if (p.shadow === true) out.sample("throttlekit_shadow_denied_total", { policy: p.name }, p.shadowDeniedTotal ?? 0)
  }
  out.family(
    "throttlekit_denied_by_axis_total",
    "counter",
    "Admission denials by the axis that bound them (concurrency, rate), per admitter policy."
  )
  for (const p of policies) {
    if (p.kind !== "admitter") continue
    for (const [axis, count] of Object.entries(p.deniedByAxis)) {
      out.sample("throttlekit_denied_by_axis_total", { policy: p.name, axis }, count)
    }
  }
  out.family("throttlekit_limit", "gauge", "The limit of the latest decision, per policy (once it has decided).")
  for (const p of policies) {
    if (p.allowedTotal + p.deniedTotal > 0) out.sample("throttlekit_limit", { policy: p.name }, p.limit)
  }
  out.family("throttlekit_latency_p50_ms", "gauge", "Median decision latency over the last 256 decisions, per policy.")
  for (const p of policies) {
    if (p.latency.n > 0) out.sample("throttlekit_latency_p50_ms", { policy: p.name }, p.latency.p50Ms)
  }
  out.family("throttlekit_latency_p99_ms", "gauge", "p99 decision latency over the last 256 decisions, per policy.")
  for (const p of policies) {
    if (p.latency.n > 0) out.sample("throttlekit_latency_p99_ms", { policy: p.name }, p.latency.p99Ms)
  }

  out.family("throttlekit_guard_inflight", "gauge", "Admission slots held now, per concurrency guard.")
  for (const g of snapshot.guards) out.sample("throttlekit_guard_inflight", { guard: g.name }, g.inflight)
  out.family("throttlekit_guard_limit", "gauge", "The concurrency ceiling, per guard.")
  for (const g of snapshot.guards) out.sample("throttlekit_guard_limit", { guard: g.name }, g.limit)
  out.family("throttlekit_guard_fenced", "gauge", "1 if the guard is fenced, else 0, per guard.")
  for (const g of snapshot.guards) out.sample("throttlekit_guard_fenced", { guard: g.name }, g.fenced ? 1 : 0)

  out.family("throttlekit_rpc_errors_total", "counter", "gRPC calls answered with an error status, by method and code.")
  for (const e of counters.errors()) out.sample("throttlekit_rpc_errors_total", e.labels, e.count)
  out.family(
    "throttlekit_store_outage_answers_total",
    "counter",
    "Limiter checks answered by the fail mode because the store was down, per policy and answer."
  )
  const answer = info.failMode === "open" ? "allowed" : "denied"
  for (const o of counters.outages()) {
    out.sample("throttlekit_store_outage_answers_total", { policy: o.labels.policy, answer }, o.count)
  }

  out.family(
    "throttlekit_degraded_answers_total",
    "counter",
    "Limiter checks and meter debits decided by this server alone against its share of the limit while the " +
      "store was unreachable (insurance), per policy."
  )
  for (const d of counters.degraded()) out.sample("throttlekit_degraded_answers_total", d.labels, d.count)
  out.family("throttlekit_store_degraded", "gauge", "1 while the store is unreachable and insurance decides, else 0.")
    .sample("throttlekit_store_degraded", {}, counters.isDegraded() ? 1 : 0)

  out.family("throttlekit_grpc_connections", "gauge", "gRPC connections open now.")
    .sample("throttlekit_grpc_connections", {}, live.connections)
  out.family("throttlekit_watch_streams", "gauge", "Monitor Watch streams open now.")
    .sample("throttlekit_watch_streams", {}, live.watchStreams)
  out.family(
    "throttlekit_watch_dropped_total",
    "counter",
    "Denial events Watch streams dropped (fell behind or over a cap)."
  )
    .sample("throttlekit_watch_dropped_total", {}, live.watchDropped)
  return out.text()
}
