/**
 * The Monitor hub: what the server's decisions looked like recently, fed by the tap (`Tap.ts`) around
 * the store under the `RateLimiter` it serves, read by `GetSnapshot` and `Watch`.
 *
 * Per policy (limiters, then admitters, in config order; meters are not tracked): decisions allowed and
 * denied over a rolling window (60 one-second buckets by default), the limit of the latest decision, the
 * latency of the last 256 decisions (p50/p99 by nearest rank), the 10 keys most often requested and
 * denied, totals, and denials by axis. A policy in shadow mode (`shadow: true`) answered its denials
 * allowed: they are counted as allowed and as shadow denials (`shadowDenied`, `shadowDeniedTotal`), and
 * go neither to the denial ring nor to Watch (no caller was denied). Per admitter: its concurrency guard's ceiling and slots held (a
 * fleet-shared guard reports its own: ceiling, slots held, share, global ceiling, nodes, fence). The
 * last 200 denials are kept in a ring.
 *
 * Every structure is bounded: the latency ring, the denial ring, and the key counts, which are
 * Space-Saving summaries of 128 keys each (a key flood evicts the least counted key; a key seen more than
 * 1/128 of the time is always kept, and the counts reported are lower bounds). Recording is synchronous,
 * never throws into a decision and never waits, and costs the same whatever the number of Watch streams:
 * a denial is appended to the Watch feed's bounded ring (`WatchFeed.ts`), from which each stream reads at
 * its own pace; a slow reader loses events (counted) instead of holding memory or slowing decisions.
 *
 * @since 0.1.0
 */
import type * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { DecisionData } from "../../Decision.js"
import { sameDefinition } from "../../internal/sameDefinition.js"
import {
  DenialEvent,
  type GuardSummary,
  type KeyCount,
  type LatencySummary,
  LENS_VERSION,
  type PolicyDetail,
  type RawSnapshot
} from "../../monitor/Snapshot.js"
import { isShadow, type Policy } from "../../Policy.js"
import type { FleetGuardState } from "../../services/RateLimiterStore.js"
import * as WatchFeed from "./WatchFeed.js"

/**
 * Sizes of the hub's bounded structures. `watchBuffer` is the Watch feed's ring (a stream further behind
 * loses the older events); a Watch stream sends at most `watchEventsPerSecond` events per second, and all
 * the streams of a hub together at most `watchEventsPerSecondPerServer` (shared evenly between them).
 *
 * @since 0.1.0
 * @category constants
 */
export const limits = {
  windowMs: 60_000,
  latencySamples: 256,
  topKeys: 10,
  trackedKeys: 128,
  recentDenials: 200,
  watchBuffer: 1024,
  watchEventsPerSecond: 500,
  watchEventsPerSecondPerServer: 5_000
} as const

/**
 * Options of the hub.
 *
 * @since 0.1.0
 * @category models
 */
export interface HubOptions {
  /** The served policies (their names, kinds and strategies). */
  readonly policies: ReadonlyArray<Policy> | { readonly policies: ReadonlyArray<Policy> }
  /** The node id the snapshot reports (the server's configured `host:port`; default ""). */
  readonly nodeId?: string
  /** The store behind the decisions, reported under `health` (default "memory"). */
  readonly backend?: string
  /** The rolling window of the allowed/denied counts, in ms (default 60 000; whole seconds). */
  readonly windowMs?: number
}

/**
 * Approximate top-k by the Space-Saving algorithm over at most `capacity` keys: a new key past the
 * capacity replaces the least counted one and inherits its count as error. A key seen more than
 * total / capacity times is always kept. The count reported is the guaranteed part (count − error), a
 * lower bound of the true count, so a flood of one-off keys shows as keys seen once, not as heavy hitters.
 */
class TopKeys {
  private readonly counts = new Map<string, { count: number; error: number }>()
  constructor(private readonly capacity: number) {}

  add(key: string): void {
    const entry = this.counts.get(key)
    if (entry !== undefined) {
      entry.count++
      return
    }
    if (this.counts.size < this.capacity) {
      this.counts.set(key, { count: 1, error: 0 })
      return
    }
    let minKey = ""
    let min = Number.POSITIVE_INFINITY
    for (const [k, e] of this.counts) {
      if (e.count < min) {
        min = e.count
        minKey = k
      }
    }
    this.counts.delete(minKey)
    this.counts.set(key, { count: min + 1, error: min })
  }

  top(n: number): Array<KeyCount> {
    return Array.from(this.counts, ([key, e]) => ({ key, count: e.count - e.error }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, n)
  }
}

/** Allowed/denied counts in one-second buckets over a rolling window. */
class RollingCounts {
  private readonly second: Array<number>
  private readonly allowed: Array<number>
  private readonly denied: Array<number>
  private readonly shadowDenied: Array<number>
  constructor(private readonly buckets: number) {
    this.second = new Array<number>(buckets).fill(-1)
    this.allowed = new Array<number>(buckets).fill(0)
    this.denied = new Array<number>(buckets).fill(0)
    this.shadowDenied = new Array<number>(buckets).fill(0)
  }

  /** One decision: answered `allowed` or not; `shadowed` when the allowance was a shadow-mode denial. */
  add(now: number, allowed: boolean, shadowed: boolean): void {
    const second = Math.floor(now / 1000)
    const i = ((second % this.buckets) + this.buckets) % this.buckets
    if (this.second[i] !== second) {
      this.second[i] = second
      this.allowed[i] = 0
      this.denied[i] = 0
      this.shadowDenied[i] = 0
    }
    if (allowed) this.allowed[i]! += 1
    else this.denied[i]! += 1
    if (shadowed) this.shadowDenied[i]! += 1
  }

  totals(now: number): { allowed: number; denied: number; shadowDenied: number } {
    const current = Math.floor(now / 1000)
    let allowed = 0
    let denied = 0
    let shadowDenied = 0
    for (let i = 0; i < this.buckets; i++) {
      const second = this.second[i]!
      if (second > current - this.buckets && second <= current) {
        allowed += this.allowed[i]!
        denied += this.denied[i]!
        shadowDenied += this.shadowDenied[i]!
      }
    }
    return { allowed, denied, shadowDenied }
  }
}

/** The last `size` latency samples. */
class LatencyRing {
  private readonly samples: Float64Array
  private count = 0
  private next = 0
  constructor(size: number) {
    this.samples = new Float64Array(size)
  }

  add(ms: number): void {
    this.samples[this.next] = ms
    this.next = (this.next + 1) % this.samples.length
    if (this.count < this.samples.length) this.count++
  }

  summary(): LatencySummary {
    const n = this.count
    if (n === 0) return { avgMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, n: 0 }
    const sorted = Array.from(this.samples.subarray(0, n)).sort((a, b) => a - b)
    const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * n) - 1)]!
    let sum = 0
    for (const ms of sorted) sum += ms
    return { avgMs: sum / n, p50Ms: rank(50), p99Ms: rank(99), maxMs: sorted[n - 1]!, n }
  }
}

/** Everything tracked for one policy. */
class PolicyStats {
  readonly rolling: RollingCounts
  readonly latency = new LatencyRing(limits.latencySamples)
  readonly requested = new TopKeys(limits.trackedKeys)
  readonly deniedKeys = new TopKeys(limits.trackedKeys)
  readonly deniedByAxis = new Map<string, number>()
  allowedTotal = 0
  deniedTotal = 0
  shadowDeniedTotal = 0
  limit = 0
  constructor(
    readonly name: string,
    readonly kind: "limiter" | "admitter",
    readonly strategy: string,
    buckets: number,
    /** The policy is in shadow mode: its denials were answered allowed. */
    readonly shadow: boolean
  ) {
    this.rolling = new RollingCounts(buckets)
  }
}

/** A concurrency guard as seen through the admissions. */
class GuardStats {
  inflight = 0
  constructor(readonly name: string, public limit: number, readonly rateAxis: boolean) {}
}

/**
 * The hub's operations.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hub {
  /** Records a decision (denials also go to the ring and the Watch stream). Never fails. */
  readonly recordDecision: (
    policy: string,
    key: string,
    decision: DecisionData,
    latencyMs: number,
    axis: string
  ) => Effect.Effect<void>
  /** An admission of `policy` now (at `now`) holds a slot until `expiresAt` (or until `slotEnded`). */
  readonly slotHeld: (policy: string, leaseId: string, expiresAt: number, now: number) => void
  /** A held slot was released or reclaimed (unknown ids are ignored). */
  readonly slotEnded: (leaseId: string) => void
  /** Held slots were renewed until `expiresAt`. */
  readonly slotsRenewed: (leaseIds: ReadonlyArray<string>, expiresAt: number) => void
  /**
   * Reads the fleet-shared guards' own state from now on (the store's `fleetGuards`): their ceiling,
   * slots held, share, global ceiling, nodes and fence, instead of what the admissions show.
   *
   * @since 0.3.0
   */
  readonly observeFleetGuards: (read: (now: number) => ReadonlyArray<FleetGuardState>) => void
  /**
   * Follows a reloaded policy set: a policy still of the same kind, strategy and shadow mode keeps its statistics
   * (an admitter whose definition changed gets a fresh guard, as its store does), an added one starts
   * empty, a removed one is dropped from the snapshot. The fleet-shared guards are forgotten until
   * `observeFleetGuards` is called again.
   *
   * @since 0.3.0
   */
  readonly reload: (policies: ReadonlyArray<Policy>) => void
  /** The full snapshot now. */
  readonly snapshot: Effect.Effect<RawSnapshot>
  /**
   * The live denials of `policy` ("" or none = all), at most 500 per second, and at most 5000 per second
   * for all the streams together, shared evenly (events over a cap are dropped). A reader that falls
   * behind loses the oldest events. Ends when the hub shuts down.
   */
  readonly watch: (policy?: string) => Stream.Stream<DenialEvent>
  /**
   * `watch` as a scoped pull (what the Watch RPC serves: a pull costs far less than a `Stream` when many
   * are open and mostly idle). Each run of the pull gives the next events, waiting for some; it fails with
   * `Option.none()` once the hub has shut down.
   */
  readonly watchPull: (
    policy?: string
  ) => Effect.Effect<Effect.Effect<Chunk.Chunk<DenialEvent>, Option.Option<never>>, never, Scope.Scope>
  /** How many Watch streams are subscribed now. */
  readonly watchers: () => number
  /** How many denials Watch streams have dropped so far (fell behind, or over a cap). */
  readonly watchDropped: () => number
}

/**
 * The hub, as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class MonitorHub extends Context.Tag("throttlekit-effect/MonitorHub")<MonitorHub, Hub>() {}

const strategyName = (policy: Policy): string => policy.kind === "limiter" ? policy.strategy.kind : ""

/**
 * Builds a hub; its Watch streams end when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: HubOptions): Effect.Effect<Hub, never, Scope.Scope> =>
  Effect.gen(function*() {
    const list = "policies" in options.policies ? options.policies.policies : options.policies
    const windowMs = Math.max(1000, Math.round((options.windowMs ?? limits.windowMs) / 1000) * 1000)
    const buckets = windowMs / 1000
    let stats = new Map<string, PolicyStats>()
    let guards = new Map<string, GuardStats>()
    /** The admitters' definitions, to tell a changed one (a fresh guard) on reload. */
    let admitters = new Map<string, Policy>()
    /** The tracked policies of `list` (limiters, then admitters), keeping what `keep` still describes. */
    const track = (list: ReadonlyArray<Policy>, keep: boolean) => {
      const nextStats = new Map<string, PolicyStats>()
      const nextGuards = new Map<string, GuardStats>()
      const nextAdmitters = new Map<string, Policy>()
      const statsOf = (policy: Policy, kind: "limiter" | "admitter", strategy: string) => {
        const before = keep ? stats.get(policy.name) : undefined
        return before !== undefined && before.kind === kind && before.strategy === strategy &&
            before.shadow === isShadow(policy)
          ? before
          : new PolicyStats(policy.name, kind, strategy, buckets, isShadow(policy))
      }
      for (const policy of list) {
        if (policy.kind === "limiter") nextStats.set(policy.name, statsOf(policy, "limiter", strategyName(policy)))
      }
      for (const policy of list) {
        if (policy.kind !== "admitter") continue
        nextStats.set(policy.name, statsOf(policy, "admitter", policy.rate?.kind ?? ""))
        const before = keep ? admitters.get(policy.name) : undefined
        const guard = keep && before !== undefined && sameDefinition(before, policy)
          ? guards.get(policy.name)
          : undefined
        nextGuards.set(
          policy.name,
          guard ?? new GuardStats(policy.name, policy.concurrency.initialLimit, policy.rate !== undefined)
        )
        nextAdmitters.set(policy.name, policy)
      }
      stats = nextStats
      guards = nextGuards
      admitters = nextAdmitters
    }
    track(list, false)
    const recent: Array<DenialEvent> = []
    let recentNext = 0
    const slots = new Map<string, { readonly policy: string; expiresAt: number }>()
    let sinceSweep = 0
    let fleetGuards: ((now: number) => ReadonlyArray<FleetGuardState>) | undefined

    const feed = yield* WatchFeed.make({
      policies: stats.keys(),
      capacity: limits.watchBuffer,
      perStreamPerSecond: limits.watchEventsPerSecond,
      perServerPerSecond: limits.watchEventsPerSecondPerServer
    })

    const endSlot = (leaseId: string) => {
      const slot = slots.get(leaseId)
      if (slot === undefined) return
      slots.delete(leaseId)
      const guard = guards.get(slot.policy)
      if (guard !== undefined && guard.inflight > 0) guard.inflight--
    }

    /** Drops slots whose lease expired without a release (a crashed holder): the backend reclaimed them. */
    const sweep = (now: number) => {
      for (const [id, slot] of slots) if (slot.expiresAt <= now) endSlot(id)
    }

    /** The bookkeeping of one decision; returns the denial event, if any. */
    const note = (
      policy: string,
      key: string,
      decision: DecisionData,
      latencyMs: number,
      axis: string,
      now: number
    ): DenialEvent | undefined => {
      const s = stats.get(policy)
      if (s === undefined) return undefined
      // A shadow-mode denial was answered allowed: counted as allowed and as a shadow denial, not a denial.
      const shadowed = s.shadow && !decision.allowed
      s.rolling.add(now, decision.allowed || shadowed, shadowed)
      s.latency.add(latencyMs)
      s.requested.add(key)
      s.limit = decision.limit
      const guard = guards.get(policy)
      if (guard !== undefined && (axis === "concurrency" || !guard.rateAxis)) guard.limit = decision.limit
      if (decision.allowed || shadowed) {
        s.allowedTotal++
        if (shadowed) s.shadowDeniedTotal++
        return undefined
      }
      s.deniedTotal++
      s.deniedKeys.add(key)
      s.deniedByAxis.set(axis, (s.deniedByAxis.get(axis) ?? 0) + 1)
      const event = new DenialEvent({
        at: now,
        policy,
        key,
        axis,
        limit: decision.limit,
        remaining: decision.remaining,
        retryAfterMs: decision.retryAfterMs
      }, true)
      if (recent.length < limits.recentDenials) recent.push(event)
      else recent[recentNext] = event
      recentNext = (recentNext + 1) % limits.recentDenials
      return event
    }

    const recordDecision: Hub["recordDecision"] = (policy, key, decision, latencyMs, axis) =>
      Effect.clockWith((clock) => {
        try {
          const event = note(policy, key, decision, latencyMs, axis, clock.unsafeCurrentTimeMillis())
          if (event !== undefined) feed.append(event)
        } catch {
          // Monitoring must never break a decision; a broken record is dropped.
        }
        return Effect.void
      })

    const slotHeld: Hub["slotHeld"] = (policy, leaseId, expiresAt, now) => {
      const guard = guards.get(policy)
      if (guard === undefined || slots.has(leaseId)) return
      guard.inflight++
      slots.set(leaseId, { policy, expiresAt })
      if (++sinceSweep >= 1024) {
        sinceSweep = 0
        sweep(now)
      }
    }

    const slotsRenewed: Hub["slotsRenewed"] = (leaseIds, expiresAt) => {
      for (const id of leaseIds) {
        const slot = slots.get(id)
        if (slot !== undefined) slot.expiresAt = expiresAt
      }
    }

    const snapshot: Effect.Effect<RawSnapshot> = Effect.clockWith((clock) =>
      Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        sweep(now)
        const policies: Array<PolicyDetail> = []
        for (const s of stats.values()) {
          const counts = s.rolling.totals(now)
          policies.push({
            name: s.name,
            kind: s.kind,
            strategy: s.strategy,
            allowed: counts.allowed,
            denied: counts.denied,
            limit: s.limit,
            latency: s.latency.summary(),
            topDenied: s.deniedKeys.top(limits.topKeys),
            topRequested: s.requested.top(limits.topKeys),
            allowedTotal: s.allowedTotal,
            deniedTotal: s.deniedTotal,
            deniedByAxis: Object.fromEntries(s.deniedByAxis),
            ...(s.shadow
              ? { shadow: true, shadowDenied: counts.shadowDenied, shadowDeniedTotal: s.shadowDeniedTotal }
              : {})
          })
        }
        const fleet = new Map<string, FleetGuardState>()
        for (const state of fleetGuards?.(now) ?? []) fleet.set(state.name, state)
        const guardList: Array<GuardSummary> = Array.from(guards.values(), (g) =>
          fleet.get(g.name) ?? {
            name: g.name,
            limit: g.limit,
            inflight: g.inflight,
            share: 0,
            lGlobal: 0,
            nodes: 0,
            fenced: false
          })
        const denials = recent.length < limits.recentDenials
          ? recent.slice()
          : [...recent.slice(recentNext), ...recent.slice(0, recentNext)]
        return {
          meta: {
            generatedAt: now,
            windowMs,
            mode: "process" as const,
            lensVersion: LENS_VERSION,
            nodeId: options.nodeId ?? ""
          },
          policies,
          guards: guardList,
          recentDenials: denials,
          health: { backend: options.backend ?? "memory" }
        }
      })
    )

    return {
      recordDecision,
      slotHeld,
      slotEnded: endSlot,
      slotsRenewed,
      observeFleetGuards: (read) => {
        fleetGuards = read
      },
      reload: (policies) => {
        track(policies, true)
        feed.follow(stats.keys())
        fleetGuards = undefined
      },
      snapshot,
      watch: (policy = "") => feed.stream(policy),
      watchPull: (policy = "") => feed.subscribe(policy),
      watchers: feed.streams,
      watchDropped: feed.dropped
    }
  })

/**
 * The hub as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: HubOptions): Layer.Layer<MonitorHub> => Layer.scoped(MonitorHub, make(options))
