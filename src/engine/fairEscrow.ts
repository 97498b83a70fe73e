/**
 * Weighted fair escrow (the ThrottleKit core's `weightedFairEscrow`): one budget per epoch-aligned window,
 * split between tenants by weight, with an idle tenant's share lent to busy ones only while the other
 * tenants' unused guarantees stay reserved. The arithmetic is the core's, in its order, so a decision here
 * is the core's decision for the same calls (but for the one difference below).
 *
 * The window is `floor(now / windowMs) * windowMs`; the first call at or past its end starts a new one with
 * no tenants. `budget` is what this holder may hand out in the window: the whole `limit` for a local
 * escrow, the share a region pool granted for a federated one (it starts at 0 and grows by grants).
 *
 * A check of `cost` by tenant `t` (weight `w`; the tenant joins the active set first, even when denied):
 *
 * ```
 * W          = Σ weights of the active tenants;  used = Σ their used + the evicted used
 * g(x)       = floor(x.weight * budget / W)            (0 when W = 0)
 * left       = budget − used;  resetAt = ceil(windowStart + windowMs)
 * cost > left          → deny: limit = max(g(t), t.used), remaining = max(0, g(t) − t.used)
 * t.used + cost ≤ g(t) → allow: t.used += cost; limit = g(t), remaining = max(0, g(t) − t.used)
 * otherwise (borrow):
 *   reserve  = Σ over the other active tenants of max(0, g(x) − x.used)
 *   headroom = max(0, g(t) − t.used)
 *   ceiling  = g(t) + min(t.used + cost − g(t), cost, max(0, left − reserve − headroom), left)
 *   t.used + cost ≤ ceiling → allow: t.used += cost;  limit = ceiling, remaining = max(0, ceiling − t.used)
 *   else deny with limit = ceiling, remaining = max(0, ceiling − t.used)
 * a denial's retryAfterMs = max(0, ceil(resetAt − now)); an allow's is 0
 * ```
 *
 * One deliberate difference from the core: the core lends `max(0, left − reserve)` beyond the guarantee,
 * which counts the asker's own unused guarantee (`headroom`) as lendable too, so a check that straddles its
 * guarantee (part within, part borrowed) can spend another tenant's reserved share: with limit 9 and
 * weights 3 and 2 (guarantees 5 and 3), the first tenant at 3 used asking 5 is allowed by the core, and the
 * second tenant, at 1 used, is then denied within its guarantee. Here the headroom is not lent twice, so that
 * check is denied (limit 6) and the second tenant keeps its share. Checks of cost 1 decide as the core's.
 *
 * Guarantees: the window's total never exceeds `budget` (so never `limit`); a tenant asking within its
 * guarantee `g(t)` is allowed whenever the budget's unspent part covers the cost, and no tenant borrows
 * past its own guarantee while that would eat into another active tenant's unused guarantee. A tenant
 * that has joined keeps its guarantee reserved until the window ends.
 *
 * Past `maxKeys` tenants, the oldest one is forgotten to make room, and its used units keep counting
 * against the budget (`evictedUsed`) so the total bound holds (the core's federated escrow does this; its
 * local one drops them, which this engine does not copy).
 *
 * @since 0.3.0
 * @internal
 */
import type { DecisionData } from "../Decision.js"

/**
 * A tenant of the current window: its weight (the latest seen) and the units it used.
 *
 * @since 0.3.0
 * @category models
 */
export interface Tenant {
  weight: number
  used: number
}

/**
 * The parameters of an escrow: the window's `limit`, its length, the most tenants tracked, and whether
 * the budget is the whole `limit` (`local`) or what a region pool granted (starting at 0 each window).
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  readonly limit: number
  readonly windowMs: number
  readonly maxKeys: number
  readonly local: boolean
}

/**
 * One escrow's window: its start, its budget, its tenants in the order they joined.
 *
 * @since 0.3.0
 * @category models
 */
export class Escrow {
  windowStart = Number.NEGATIVE_INFINITY
  budget: number
  evictedUsed = 0
  /** The region weight the pool last heard in this window (federated only; NaN: none yet). */
  poolWeight = Number.NaN
  readonly tenants = new Map<string, Tenant>()

  constructor(readonly options: Options) {
    this.budget = options.local ? options.limit : 0
  }

  /** Starts the window of `now` when the current one has ended (all tenants leave). */
  roll(now: number): void {
    const { windowMs } = this.options
    if (now < this.windowStart + windowMs) return
    this.windowStart = Math.floor(now / windowMs) * windowMs
    this.budget = this.options.local ? this.options.limit : 0
    this.evictedUsed = 0
    this.poolWeight = Number.NaN
    this.tenants.clear()
  }

  /** The tenant `name` with its weight set to `weight`, joining (and maybe evicting the oldest) if new. */
  enter(name: string, weight: number): Tenant {
    const known = this.tenants.get(name)
    if (known !== undefined) {
      known.weight = weight
      return known
    }
    if (this.tenants.size >= this.options.maxKeys) {
      const oldest = this.tenants.entries().next()
      if (oldest.done !== true) {
        this.evictedUsed += oldest.value[1].used
        this.tenants.delete(oldest.value[0])
      }
    }
    const tenant: Tenant = { weight, used: 0 }
    this.tenants.set(name, tenant)
    return tenant
  }

  /** The total weight of the active tenants (summed in join order, as the core does). */
  totalWeight(): number {
    let total = 0
    for (const tenant of this.tenants.values()) total += tenant.weight
    return total
  }

  /** The units used in the window, evicted tenants' included. */
  totalUsed(): number {
    let total = this.evictedUsed
    for (const tenant of this.tenants.values()) total += tenant.used
    return total
  }

  /** A tenant's guaranteed share of the budget: `floor(weight * budget / totalWeight)`. */
  guarantee(weight: number, totalWeight: number): number {
    return totalWeight > 0 ? Math.floor((weight * this.budget) / totalWeight) : 0
  }

  /** What the other active tenants' guarantees still hold back from `tenant`. */
  reserveBesides(tenant: Tenant, totalWeight: number): number {
    let reserve = 0
    for (const other of this.tenants.values()) {
      if (other === tenant) continue
      reserve += Math.max(0, this.guarantee(other.weight, totalWeight) - other.used)
    }
    return reserve
  }

  /** Whether `decide` would allow `cost` for `tenant` now (changes nothing). */
  wouldAllow(tenant: Tenant, cost: number): boolean {
    const totalWeight = this.totalWeight()
    const left = this.budget - this.totalUsed()
    if (cost > left) return false
    const own = this.guarantee(tenant.weight, totalWeight)
    if (tenant.used + cost <= own) return true
    return tenant.used + cost <= this.ceiling(tenant, cost, own, left, totalWeight)
  }

  /**
   * What a federated region asks its pool for so that `cost` fits for `tenant`: at least everything used,
   * the other tenants' reserved guarantees and the cost (the core's ask), and at least the budget whose
   * share for `tenant` covers its used units and the cost, `ceil((used + cost) * totalWeight / weight)`;
   * at most `limit`. (The core asks only the first: a tenant that already borrowed beyond the share of a
   * small budget then stalls below its share of the whole, as its ask no longer grows the budget.)
   */
  need(tenant: Tenant, cost: number): number {
    const totalWeight = this.totalWeight()
    const core = this.totalUsed() + this.reserveBesides(tenant, totalWeight) + cost
    const share = Math.ceil(((tenant.used + cost) * totalWeight) / tenant.weight)
    return Math.min(this.options.limit, Math.max(core, share))
  }

  /**
   * The grant a federated region sends its pool before deciding `cost` for `tenant`, or `undefined` when
   * none is needed: its budget is enough (the whole limit, or `cost` would be allowed) and the pool knows
   * its current weight. When the budget is enough but the weight moved (a tenant joined or left), the ask
   * keeps the budget and only tells the pool the weight. (The core asks only for budget, so a tenant that
   * joins without one leaves the pool with the region's old weight, and another region can take what the
   * new tenant's share needed.)
   */
  ask(tenant: Tenant, cost: number): PoolAsk | undefined {
    const weight = this.totalWeight()
    const enough = this.budget >= this.options.limit || this.wouldAllow(tenant, cost)
    if (enough && weight === this.poolWeight) return undefined
    return { weight, wantTotal: enough ? this.budget : this.need(tenant, cost) }
  }

  /** Takes the pool's answer (the region's total grant) to `ask`; true when asking again may help. */
  granted(ask: PoolAsk, total: number): boolean {
    const grew = total > this.budget
    this.budget = total
    this.poolWeight = ask.weight
    return grew
  }

  private ceiling(tenant: Tenant, cost: number, own: number, left: number, totalWeight: number): number {
    const headroom = Math.max(0, own - tenant.used)
    const borrowable = Math.max(0, left - this.reserveBesides(tenant, totalWeight) - headroom)
    return own + Math.min(tenant.used + cost - own, cost, borrowable, left)
  }

  /** Checks `cost` for `tenant` (already entered) at `now`, spending it when allowed. */
  decide(tenant: Tenant, cost: number, now: number): DecisionData {
    const resetAt = Math.ceil(this.windowStart + this.options.windowMs)
    const retryAfterMs = Math.max(0, Math.ceil(resetAt - now))
    const totalWeight = this.totalWeight()
    const own = this.guarantee(tenant.weight, totalWeight)
    const left = this.budget - this.totalUsed()
    if (cost > left) {
      return {
        allowed: false,
        limit: Math.max(own, tenant.used),
        remaining: Math.max(0, own - tenant.used),
        resetAt,
        retryAfterMs
      }
    }
    if (tenant.used + cost <= own) {
      tenant.used += cost
      return { allowed: true, limit: own, remaining: Math.max(0, own - tenant.used), resetAt, retryAfterMs: 0 }
    }
    const ceiling = this.ceiling(tenant, cost, own, left, totalWeight)
    const allowed = tenant.used + cost <= ceiling
    if (allowed) tenant.used += cost
    return {
      allowed,
      limit: ceiling,
      remaining: Math.max(0, ceiling - tenant.used),
      resetAt,
      retryAfterMs: allowed ? 0 : retryAfterMs
    }
  }
}

/**
 * What a federated region sends its pool: its weight (the total weight of its active tenants) and the
 * total grant it wants for the window.
 *
 * @since 0.3.0
 * @category models
 */
export interface PoolAsk {
  readonly weight: number
  readonly wantTotal: number
}

/**
 * A region's entry in a pool: its weight (the total weight of its active tenants) and what it was granted.
 *
 * @since 0.3.0
 * @category models
 */
export interface Region {
  weight: number
  granted: number
}

/**
 * The cross-region pool of a federated escrow (the core's `regionFairPool`), in process: one `limit` per
 * epoch-aligned window, granted to regions by weight. A grant never shrinks in its window.
 *
 * ```
 * a grant of (region r, weight w, wantTotal) at now, after starting the window of now if needed:
 *   r.weight = w (r joins with granted 0)
 *   wantTotal ≤ r.granted → r.granted
 *   W          = Σ weights of the regions
 *   othersHold = Σ over the other regions x of max(x.granted, floor(x.weight * limit / W))
 *   r.granted  = max(0, min(wantTotal, max(r.granted, limit − othersHold)))
 * ```
 *
 * The Redis scripts `regionFairPool.grant` / `release` / `stats` run the same arithmetic on a shared hash.
 *
 * @since 0.3.0
 * @category models
 */
export class RegionPool {
  windowStart = Number.NEGATIVE_INFINITY
  readonly regions = new Map<string, Region>()

  constructor(readonly limit: number, readonly windowMs: number) {}

  private roll(now: number): void {
    if (now < this.windowStart + this.windowMs) return
    this.windowStart = Math.floor(now / this.windowMs) * this.windowMs
    this.regions.clear()
  }

  /** Grants `region` up to `wantTotal` units of the window in all; answers its total grant. */
  grant(region: string, weight: number, wantTotal: number, now: number): number {
    this.roll(now)
    let entry = this.regions.get(region)
    if (entry === undefined) {
      entry = { weight, granted: 0 }
      this.regions.set(region, entry)
    } else entry.weight = weight
    if (wantTotal <= entry.granted) return entry.granted
    let totalWeight = 0
    for (const r of this.regions.values()) totalWeight += r.weight
    let othersHold = 0
    for (const [name, r] of this.regions) {
      if (name === region) continue
      const guaranteed = totalWeight > 0 ? Math.floor((r.weight * this.limit) / totalWeight) : 0
      othersHold += Math.max(r.granted, guaranteed)
    }
    entry.granted = Math.max(0, Math.min(wantTotal, Math.max(entry.granted, this.limit - othersHold)))
    return entry.granted
  }

  /** Drops `region` from the window (its grant returns to the pool). */
  release(region: string, now: number): void {
    this.roll(now)
    this.regions.delete(region)
  }
}

/**
 * The most grants one federated check asks its pool for (each grows the region's budget or ends the loop).
 *
 * @since 0.3.0
 * @category constants
 */
export const MAX_GRANTS_PER_CHECK = 64
