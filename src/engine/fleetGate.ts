/**
 * One node's side of a fleet concurrency ceiling: the share its heartbeats were granted, and whether it
 * may admit. Admission stays local; this only tightens the local ceiling, as the ThrottleKit core's
 * distributed guard does:
 *
 * - The node admits while `inflight < ceiling`, where `ceiling = min(share, local ceiling)`.
 * - Before its first grant lands, `share` is 0 under `fail-closed` (nothing is admitted on a cold start)
 *   and the local ceiling under `local-only`.
 * - A heartbeat that fails sets `share` to 0 (`fail-closed`) or to the local ceiling (`local-only`).
 * - Self-fencing (`fail-closed` only): each heartbeat reports a lease lapsing at `sentAt + leaseTtlMs`;
 *   once the node's own clock reaches the last granted lease's lapse minus a margin of
 *   `(leaseTtlMs − heartbeatMs) / 2` without a newer grant, the node admits nothing. So a node cut off
 *   from the coordinator (whose calls hang or fail) stops admitting before the coordinator hands its share
 *   to the others. A grant that lands ends the fence.
 *
 * Grants apply in the order their heartbeats were sent: an answer to an older heartbeat that lands after
 * a newer one's is dropped.
 *
 * @since 0.3.0
 */

/**
 * What a node does while its heartbeats fail.
 *
 * @since 0.3.0
 * @category models
 */
export type OutageMode = "fail-closed" | "local-only"

/**
 * The node's timing.
 *
 * @since 0.3.0
 * @category models
 */
export interface FleetGateOptions {
  readonly onOutage: OutageMode
  readonly heartbeatMs: number
  /** How long the coordinator keeps a node that stops beating (the core's default: 2 × heartbeatMs). */
  readonly leaseTtlMs: number
}

/**
 * What a node has heard from the coordinator, and its gate.
 *
 * @since 0.3.0
 * @category models
 */
export class FleetGate {
  share: number
  lGlobal = 0
  nodes = 0
  /** The generation of the share applied (acknowledged handoff; 0 otherwise). */
  appliedGen = 0
  private sent = 0
  private applied = 0
  /** The lapse of the lease the latest grant renewed, or undefined before any grant. */
  private leaseEnd: number | undefined = undefined
  private readonly margin: number
  private readonly fences: boolean

  constructor(private readonly options: FleetGateOptions, localLimit: number) {
    this.share = options.onOutage === "fail-closed" ? 0 : localLimit
    this.fences = options.onOutage === "fail-closed"
    this.margin = (options.leaseTtlMs - options.heartbeatMs) / 2
  }

  /** Starts a heartbeat at `now`: its sequence number and the lease lapse it reports. */
  send(now: number): { readonly seq: number; readonly expiresAt: number } {
    return { seq: ++this.sent, expiresAt: now + this.options.leaseTtlMs }
  }

  /** The grant of heartbeat `seq` (which reported `expiresAt`) landed. */
  granted(
    seq: number,
    expiresAt: number,
    grant: { readonly share: number; readonly lGlobal: number; readonly nodes: number; readonly gen: number }
  ): void {
    if (seq < this.applied) return
    this.applied = seq
    this.share = grant.share
    this.lGlobal = grant.lGlobal
    this.nodes = grant.nodes
    this.appliedGen = grant.gen
    this.leaseEnd = expiresAt
  }

  /** Heartbeat `seq` failed; `localLimit` is the node's own ceiling now. */
  failed(seq: number, localLimit: number): void {
    if (seq < this.applied) return
    this.applied = seq
    this.share = this.options.onOutage === "fail-closed" ? 0 : localLimit
  }

  /** True when the node has fenced itself off at `now` (its lease is about to lapse without renewal). */
  fenced(now: number): boolean {
    return this.fences && this.leaseEnd !== undefined && now >= this.leaseEnd - this.margin
  }

  /** The ceiling the node admits against at `now`, given its own local ceiling. */
  ceiling(now: number, localLimit: number): number {
    return this.fenced(now) ? 0 : Math.min(this.share, localLimit)
  }
}
