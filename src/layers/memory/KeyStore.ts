/**
 * The Memory door's key store: one bounded key table per policy (`KeyTable`, `RateState`), every policy
 * compiled with the state it keeps (`PolicyStore`). Plain synchronous code over the engine, no Effect
 * runtime. The Memory store (`MemoryBackend`) and the synchronous `Local` door (`Local.ts`) of one layer
 * share one `PolicyStore`, so the two count against the same limits.
 *
 * Private to the Memory door: only `MemoryBackend` and `Local` import it.
 *
 * @since 0.1.0
 * @internal
 */
import { type Decision, type DecisionData, fromData } from "../../Decision.js"
import { Admitter } from "../../engine/admission.js"
import * as Gcra from "../../engine/gcra.js"
import { rateEngine } from "../../engine/index.js"
import { boxed, deny } from "../../engine/internal.js"
import { LeaseTable } from "../../engine/leaseTable.js"
import { budgetReward, type Reward, rewardOf } from "../../engine/reward.js"
import * as TokenBudget from "../../engine/tokenBudget.js"
import type { ForecastData, InPlaceEngine, RateEngine } from "../../engine/types.js"
import { InvalidArgument, OperationNotSupported, PolicyNotFound } from "../../Errors.js"
import { sameDefinition } from "../../internal/sameDefinition.js"
import type { AdmitterPolicy, FairPolicy, LimiterPolicy, MeterPolicy, Policy, Strategy } from "../../Policy.js"
import * as Validate from "../../Validate.js"
import type { FullTable, OnFull } from "./FullTable.js"

/**
 * How a door's key tables behave when full of live keys, and who hears of it.
 *
 * @since 0.2.0
 * @internal
 */
export interface TableOptions {
  readonly onFull: OnFull
  /** Called once per table, the first time it grows past `maxKeys` or refuses a new key. */
  readonly onTableFull?: ((event: FullTable) => void) | undefined
}

/**
 * What a key table asks of the cells it holds: whether a cell reads as a fresh key's (`isFresh`, the
 * engine's rule, true from some instant on until the cell is written again) and when its state expires
 * (a later instant by which it surely reads fresh unless written again).
 *
 * @since 0.2.0
 * @internal
 */
export interface CellRules<C> {
  readonly isFresh: (cell: C, now: number) => boolean
  readonly expiresAt: (cell: C, now: number) => number
}

/**
 * A per-policy key table with a cap that never changes a decision: it forgets only keys whose cells
 * read exactly as a fresh key's (`CellRules.isFresh`), so a key at remaining 0 stays denied however
 * many other keys arrive. What happens when more than `maxKeys` keys are live is `OnFull`.
 *
 * Sweeps are amortized O(1) per new key, and a check of a key the table holds never sweeps: the table
 * sweeps (drops every fresh cell in one pass) when a new key finds it at its sweep size, which is
 * `maxKeys` while a sweep leaves a tenth of `maxKeys` free; when it leaves less, under `"grow"` the
 * next sweep waits for `max(maxKeys / 10, live / 10)` more keys (the table grows past `maxKeys`), and
 * under `"deny"` for a tenth of `maxKeys` refused keys or for the instant by which a tenth of `maxKeys`
 * of the live keys have expired, whichever comes first. So under `"grow"` the table holds at most
 * `maxKeys` keys as long as each sweep finds at most nine tenths of `maxKeys` live (and after a
 * growth, once they read fresh, it is back within `maxKeys` a tenth of its size in new keys later);
 * under `"deny"` it never holds more than `maxKeys`.
 *
 * The cells are held in the Map itself and updated in place by their owner; the table never re-inserts
 * a key it holds. (Keeping a Map in write order by deleting and re-inserting keys makes V8 walk a
 * growing chain of deleted entries on every lookup of a hot key.)
 *
 * @since 0.1.0
 * @internal
 */
export class KeyTable<C> {
  private readonly entries = new Map<string, C>()
  /** A tenth of `maxKeys` (at least 1): the room a sweep must leave, the refusals between sweeps. */
  private readonly slack: number
  /** The size at which a new key sweeps the table first. */
  private sweepAt: number
  /** `"deny"`: new keys refused since the last sweep. */
  private refused = 0
  /** `"deny"`: past this instant, a tenth of `maxKeys` of the keys the last sweep kept have expired. */
  private retryAt = Number.NEGATIVE_INFINITY
  private reported = false

  constructor(
    private readonly maxKeys: number,
    private readonly rules: CellRules<C>,
    private readonly onFull: OnFull,
    /** Told the key count the first time the table grows past `maxKeys` or refuses a new key. */
    private readonly report: (keys: number) => void
  ) {
    this.slack = Math.max(1, Math.floor(maxKeys / 10))
    this.sweepAt = maxKeys
  }

  /** The cell of `key` unless it reads as a fresh key's at `now` (then it is dropped). */
  get(key: string, now: number): C | undefined {
    const cell = this.entries.get(key)
    if (cell === undefined) return undefined
    if (this.rules.isFresh(cell, now)) {
      this.entries.delete(key)
      return undefined
    }
    return cell
  }

  /** The cell of `key`, whatever it reads as, for a read-then-write with one lookup. */
  cellOf(key: string): C | undefined {
    return this.entries.get(key)
  }

  /** Drops `key` (a cell that reads fresh and that a denied check did not write, or an admin's reset). */
  drop(key: string): void {
    this.entries.delete(key)
  }

  /** Replaces the cell of `key`, which the table holds (an admin's write; the key keeps its place). */
  replace(key: string, cell: C): void {
    this.entries.set(key, cell)
  }

  /**
   * Stores `cell` under `key`, which the table does not hold, sweeping first when the table is at its
   * sweep size. `false` when the key is refused (`"deny"`, the table full of live keys): nothing stored.
   */
  add(key: string, cell: C, now: number): boolean {
    if (this.entries.size >= this.sweepAt && !this.makeRoom(now)) return false
    this.entries.set(key, cell)
    return true
  }

  /** How many keys the table holds (some may read fresh until the next sweep or lookup). */
  get size(): number {
    return this.entries.size
  }

  /**
   * Whether those of `keys` (distinct) the table does not hold can all be stored at `now`: then their
   * `add`s succeed. Under `"grow"` always (an `add` makes room). Under `"deny"`, when they fit within
   * `maxKeys`, sweeping first if a sweep is due (it drops only fresh cells, so a key may be new after it);
   * otherwise they count as one refused key, as a refused `add` does. For a multi-check, which stores its
   * new keys only when every one of them fits.
   */
  roomFor(keys: ReadonlyArray<string>, now: number): boolean {
    if (this.onFull === "grow") return true
    const fits = () => {
      let size = this.entries.size
      for (const key of keys) if (!this.entries.has(key)) size++
      return size <= this.maxKeys
    }
    if (fits()) return true
    if (this.refused >= this.slack || now > this.retryAt) {
      this.sweep(now)
      if (fits()) return true
    }
    this.refused++
    this.once()
    return false
  }

  /** For a refused key: the ms until the next sweep is due by time (at least 1). */
  retryAfterMs(now: number): number {
    // A cell expires once the clock is strictly past its expiry: the first whole ms after `retryAt`.
    const wait = Math.floor(this.retryAt) + 1 - now
    return wait >= 1 ? Math.ceil(wait) : 1
  }

  /** Whether a new key can be stored, sweeping when the policy allows it. */
  private makeRoom(now: number): boolean {
    if (this.onFull === "grow") {
      this.sweep(now)
      return true
    }
    if (this.refused >= this.slack || now > this.retryAt) {
      this.sweep(now)
      if (this.entries.size < this.maxKeys) return true
    }
    this.refused++
    this.once()
    return false
  }

  /** Reports the table full, the first time. */
  private once(): void {
    if (this.reported) return
    this.reported = true
    this.report(this.entries.size)
  }

  /** Drops every cell that reads fresh at `now`, then sets when the next sweep is due. */
  private sweep(now: number): void {
    const { entries, rules } = this
    for (const [key, cell] of entries) {
      if (rules.isFresh(cell, now)) entries.delete(key)
    }
    const live = entries.size
    // Less than a tenth of maxKeys left free: the next sweep must wait for more than the room left.
    const crowded = live > this.maxKeys - this.slack
    if (this.onFull === "grow") {
      this.sweepAt = crowded ? live + Math.max(this.slack, Math.floor(live / 10)) : this.maxKeys
      if (crowded) this.once()
    } else {
      this.refused = 0
      this.retryAt = crowded ? this.nthExpiry(now, this.slack) : Number.NEGATIVE_INFINITY
    }
  }

  /** The `n`-th earliest expiry of the cells held (the latest one when there are fewer). */
  private nthExpiry(now: number, n: number): number {
    const expiries = new Float64Array(this.entries.size)
    let i = 0
    for (const cell of this.entries.values()) expiries[i++] = this.rules.expiresAt(cell, now)
    expiries.sort()
    return i === 0 ? Number.NEGATIVE_INFINITY : expiries[Math.min(n, i) - 1]!
  }
}

/**
 * What a door's key tables need to know beyond a policy's own settings: the full-table policy and its
 * report, bound to one policy's name.
 */
const tableFor = <C>(policy: Policy, rules: CellRules<C>, options: TableOptions): KeyTable<C> => {
  const onTableFull = options.onTableFull
  return new KeyTable(
    policy.maxKeys,
    rules,
    options.onFull,
    (keys) => onTableFull?.({ policy: policy.name, maxKeys: policy.maxKeys, keys, onFull: options.onFull })
  )
}

/**
 * A rate strategy (or a meter's token budget) with its key table. The table holds one cell per key,
 * which the strategy's in-place check updates (`InPlaceEngine`): a GCRA check allocates nothing but its
 * decision; any other strategy's cell is a box whose state each allowed check replaces (`boxed`).
 *
 * A key found in the table was valid when it was stored (every write follows a key check), so
 * `checkUnvalidated` checks only keys it does not find: the usual check, on a known key, pays one Map
 * lookup and no key scan.
 *
 * @since 0.1.0
 * @internal
 */
export class RateState {
  /** The key table: cells only, written by this class alone. */
  private readonly table: KeyTable<unknown>
  /**
   * The blocked keys (an admin's `block`): key → the epoch-ms the block ends. Empty unless an admin
   * blocked a key, and a check reads only its size then.
   */
  private readonly blocked = new Map<string, number>()
  /**
   * Whether `blocked` may hold a key: the one field a check reads for blocks (a plain boolean, set in the
   * constructor, so the hot path pays one field read and no Map call while no key is blocked).
   */
  declare private blocking: boolean
  private constructor(
    /** The strategy's pure functions, on the states the cells hold (peek, forecast). */
    private readonly engine: RateEngine<unknown>,
    private readonly cells: InPlaceEngine<unknown, unknown>,
    /** Gives units back to a live state (an admin's `reward`). */
    private readonly rewardState: Reward,
    policy: Policy,
    options: TableOptions
  ) {
    this.table = tableFor(policy, cells, options)
    this.blocking = false
  }

  /** The rate state of `strategy`, in a table bounded by `policy.maxKeys`. */
  static of(strategy: Strategy, policy: Policy, options: TableOptions): RateState {
    if (strategy.kind === "gcra") {
      const engine = Gcra.make(strategy)
      return RateState.erased(engine, engine.inPlace, rewardOf(strategy), policy, options)
    }
    const engine = rateEngine(strategy)
    return RateState.erased(engine, boxed(engine), rewardOf(strategy), policy, options)
  }

  /** The token budget of a meter `policy`: its `check` is the debit (cost = tokens). */
  static budget(policy: MeterPolicy, options: TableOptions): RateState {
    const engine = TokenBudget.make({ budget: policy.budget, windowMs: policy.windowMs })
    return RateState.erased(engine, boxed(engine), budgetReward, policy, options)
  }

  /**
   * Forgets the cell and state types (see `rateEngine`: the functions are only ever given cells this
   * same engine made, and the states those cells hold).
   */
  private static erased<C, S>(
    engine: RateEngine<S>,
    cells: InPlaceEngine<C, S>,
    reward: Reward,
    policy: Policy,
    options: TableOptions
  ): RateState {
    return new RateState(
      engine as unknown as RateEngine<unknown>,
      cells as unknown as InPlaceEngine<unknown, unknown>,
      reward,
      policy,
      options
    )
  }

  /** How many keys the table holds (some may read fresh until the next sweep). */
  get size(): number {
    return this.table.size
  }

  /** A consuming check of a key already validated: the state is written only when allowed. */
  check(key: string, now: number, cost: number): Decision {
    if (this.blocking) return this.blockDenial(key, now) ?? this.checkKnown(key, now, cost)
    const cell = this.table.cellOf(key)
    return cell === undefined ? this.checkFresh(key, now, cost) : this.checkStored(key, cell, now, cost)
  }

  /**
   * `check` for a key not validated yet: one the table does not hold is validated first, and
   * `undefined` means it is not a usable key (nothing was touched; `Validate.keyProblem` says why).
   * `undefined` rather than the error itself: telling a tagged error from a decision by `instanceof`
   * cost a third of the whole check.
   */
  checkUnvalidated(key: string, now: number, cost: number): Decision | undefined {
    if (this.blocking) return this.checkBlockable(key, now, cost)
    const cell = this.table.cellOf(key)
    if (cell !== undefined) return this.checkStored(key, cell, now, cost)
    return Validate.keyProblem(key) === undefined ? this.checkFresh(key, now, cost) : undefined
  }

  /**
   * A check while some key is blocked: the block's denial for a blocked key, else the usual check (the
   * key is valid either way: a blocked key was checked when it was blocked, any other is checked here).
   */
  private checkBlockable(key: string, now: number, cost: number): Decision | undefined {
    const denial = this.blockDenial(key, now)
    if (denial !== undefined) return denial
    const cell = this.table.cellOf(key)
    if (cell !== undefined) return this.checkStored(key, cell, now, cost)
    return Validate.keyProblem(key) === undefined ? this.checkFresh(key, now, cost) : undefined
  }

  /** `check` past the blocks: the key's own state decides. */
  private checkKnown(key: string, now: number, cost: number): Decision {
    const cell = this.table.cellOf(key)
    return cell === undefined ? this.checkFresh(key, now, cost) : this.checkStored(key, cell, now, cost)
  }

  /**
   * A check of a key the table holds, in its cell. An expired cell reads as no state: an allowed check
   * writes it afresh, a denied one drops the key (the outcome of dropping it on read and inserting
   * anew, with one lookup). Kept small (the denial and the insert live elsewhere) so the JIT inlines it
   * and the engine's check into the caller.
   */
  private checkStored(key: string, cell: unknown, now: number, cost: number): Decision {
    const live = now <= this.cells.expiresAt(cell, now)
    const decision = this.cells.checkInPlace(cell, live, now, cost)
    if (!live && !decision.allowed) this.table.drop(key)
    return decision
  }

  /**
   * A check of a key the table does not hold: a new cell, stored when the check is allowed and the
   * table takes it (else the refusal of a table full of live keys, `"deny"`).
   */
  private checkFresh(key: string, now: number, cost: number): Decision {
    const cell = this.cells.emptyCell()
    const decision = this.cells.checkInPlace(cell, false, now, cost)
    if (decision.allowed && !this.table.add(key, cell, now)) return this.refusal(now)
    return decision
  }

  /** Whether the table holds a cell for `key` (live or not). */
  holds(key: string): boolean {
    return this.table.cellOf(key) !== undefined
  }

  /**
   * What `check(key, now, cost)` decides, writing nothing: the engine's pure check on the key's state
   * (no state when it expired), which decides as the in-place check does (`InPlaceEngine`). A new key's
   * room in a full table is not asked here: see `roomFor`.
   */
  preview(key: string, now: number, cost: number): Decision {
    const cell = this.table.cellOf(key)
    const live = cell !== undefined && now <= this.cells.expiresAt(cell, now)
    return fromData(this.engine.check(live ? this.cells.stateOf(cell) : undefined, now, cost).decision)
  }

  /**
   * `undefined` when those of `keys` the table does not hold can all be stored at `now`
   * (`KeyTable.roomFor`), else the denial each of them gets (the refusal of a table full of live keys).
   */
  roomFor(keys: ReadonlyArray<string>, now: number): Decision | undefined {
    return this.table.roomFor(keys, now) ? undefined : this.refusal(now)
  }

  /** The denial of a new key a full table refused: nothing left, retry when a sweep is due by time. */
  private refusal(now: number): Decision {
    const retryAfterMs = this.table.retryAfterMs(now)
    return deny(this.engine.limit, 0, now + retryAfterMs, retryAfterMs)
  }

  /** The state of `key` at `now` as the engine's pure functions take it (`undefined`: reads fresh). */
  private stateAt(key: string, now: number): unknown {
    const cell = this.table.get(key, now)
    return cell === undefined ? undefined : this.cells.stateOf(cell)
  }

  /** A read-only check of cost 1. */
  peek(key: string, now: number): DecisionData {
    if (this.blocking) {
      const denial = this.blockDenial(key, now)
      if (denial !== undefined) return denial
    }
    return this.engine.peek(this.stateAt(key, now), now)
  }

  /** What `key` can take at `now`, in units of `cost` (read-only). A blocked key can take nothing. */
  forecast(key: string, now: number, cost: number): ForecastData {
    const forecast = this.engine.forecast(this.stateAt(key, now), now, cost)
    const until = this.blocking ? this.blockedUntil(key, now) : undefined
    return until === undefined
      ? forecast
      : { spendableNow: 0, nextReplenishAt: until, fullAt: forecast.fullAt > until ? forecast.fullAt : until }
  }

  // ---------------------------------------------------------------------------------------------------
  // Admin operations (`RateLimiterAdmin`): keys and units checked by the admin front.
  // ---------------------------------------------------------------------------------------------------

  /** When the block on `key` ends, or `undefined` when it is not blocked at `now` (an ended block goes). */
  private blockedUntil(key: string, now: number): number | undefined {
    const until = this.blocked.get(key)
    if (until === undefined) return undefined
    if (now < until) return until
    this.unblockKey(key)
    return undefined
  }

  /** Drops the block on `key`; with none left, checks stop looking for blocks. */
  private unblockKey(key: string): void {
    this.blocked.delete(key)
    if (this.blocked.size === 0) this.blocking = false
  }

  /** The denial of a blocked key: nothing left, reset and retry at the block's end. */
  private blockDenial(key: string, now: number): Decision | undefined {
    const until = this.blockedUntil(key, now)
    return until === undefined ? undefined : deny(this.engine.limit, 0, until, until - now)
  }

  /** Forgets `key`: its state and any block on it; it reads as a fresh key's. */
  reset(key: string): void {
    this.table.drop(key)
    this.unblockKey(key)
  }

  /**
   * Takes `units` from `key` at `now`, down to none left at most: a check of the units left (at most
   * `units`), written as a check writes, whatever a block says. Answers what a 1-unit peek sees after.
   */
  penalize(key: string, now: number, units: number): DecisionData {
    const left = this.engine.peek(this.stateAt(key, now), now).remaining
    const taken = left < units ? left : units
    if (taken >= 1) {
      const cell = this.table.cellOf(key)
      if (cell === undefined) this.checkFresh(key, now, taken)
      else this.checkStored(key, cell, now, taken)
    }
    return this.peek(key, now)
  }

  /**
   * Gives `units` back to `key` at `now`, up to a fresh key's capacity (see `engine/reward.ts` for what
   * each strategy changes). Answers what a 1-unit peek sees after.
   */
  reward(key: string, now: number, units: number): DecisionData {
    const cell = this.table.get(key, now)
    if (cell !== undefined) {
      const state = this.cells.stateOf(cell)
      const next = state === undefined ? undefined : this.rewardState(state, now, units)
      if (next === undefined) this.table.drop(key)
      else this.table.replace(key, this.cells.cellOf(next))
    }
    return this.peek(key, now)
  }

  /**
   * Blocks `key` until `until` (epoch-ms, after `now`): every check, peek and forecast of it is denied
   * with `resetAt = until` and `retryAfterMs = until − now` until then; its state is kept as it is.
   * Ended blocks of other keys are dropped here.
   */
  block(key: string, now: number, until: number): DecisionData {
    for (const [blockedKey, end] of this.blocked) {
      if (end <= now) this.blocked.delete(blockedKey)
    }
    this.blocked.set(key, until)
    this.blocking = true
    return deny(this.engine.limit, 0, until, until - now)
  }

  /** Lifts a block on `key` (none: nothing happens). Answers what a 1-unit peek sees after. */
  unblock(key: string, now: number): DecisionData {
    this.unblockKey(key)
    return this.peek(key, now)
  }
}

/**
 * A policy with the state it keeps, by kind.
 *
 * @since 0.1.0
 * @internal
 */
export type Compiled =
  | { readonly kind: "limiter"; readonly policy: LimiterPolicy; readonly rate: RateState }
  | { readonly kind: "meter"; readonly policy: MeterPolicy; readonly budget: RateState }
  | {
    readonly kind: "admitter"
    readonly policy: AdmitterPolicy
    readonly admitter: Admitter
    /** The rate axis of a unified admitter (the state an admin can change), shared with `admitter`. */
    readonly rate: RateState | undefined
  }
  | { readonly kind: "fair"; readonly policy: FairPolicy }

const compile = (policy: Policy, leaseTtlMs: number, tables: TableOptions, leases: LeaseTable<Admitter>): Compiled => {
  switch (policy.kind) {
    case "limiter":
      return { kind: "limiter", policy, rate: RateState.of(policy.strategy, policy, tables) }
    case "meter":
      return { kind: "meter", policy, budget: RateState.budget(policy, tables) }
    case "admitter": {
      const rate = policy.rate === undefined ? undefined : RateState.of(policy.rate, policy, tables)
      return {
        kind: "admitter",
        policy,
        admitter: new Admitter(policy.concurrency, rate, leaseTtlMs, undefined, leases),
        rate
      }
    }
    case "fair": // its tenants live in the door's fair-escrow table (`fair/FairEscrow.ts`)
      return { kind: "fair", policy }
  }
}

/**
 * The table options of a door that says nothing: grow past `maxKeys` rather than change a decision,
 * and tell no one.
 *
 * @since 0.2.0
 * @internal
 */
export const DEFAULT_TABLE_OPTIONS: TableOptions = { onFull: "grow" }

/**
 * Why a call on the store cannot run: a bad key or cost, an unknown policy, or a policy of another kind
 * (what the `Local` door answers as its `LocalError`).
 *
 * @since 0.1.0
 * @internal
 */
export type Fault = InvalidArgument | PolicyNotFound | OperationNotSupported

/**
 * Every policy of one Memory door, compiled, with the state it keeps. The Memory store and the
 * synchronous `Local` door of one layer share one `PolicyStore`.
 *
 * @since 0.1.0
 * @internal
 */
export class PolicyStore {
  private readonly compiled: Map<string, Compiled>
  /** The rate state of each limiter policy, by name (the consuming check's one lookup). */
  private readonly limiters = new Map<string, RateState>()
  /** The configured policy names, in configuration order (what `PolicyNotFound` lists). */
  readonly names: ReadonlyArray<string>
  /**
   * The leases of every admitter here, and of every generation before and after a reload: a lease id
   * alone names the admitter that holds it, even one whose policy has since changed or gone.
   */
  readonly leases: LeaseTable<Admitter>

  /**
   * Compiles `policies`; admitters' leases live `leaseTtlMs` without renewal; key tables full of live
   * keys do as `tables` says.
   */
  constructor(
    policies: Iterable<Policy>,
    private readonly leaseTtlMs: number,
    private readonly tables: TableOptions = DEFAULT_TABLE_OPTIONS,
    /** A previous store whose compiled policies (and their state) are kept where the definition is the same. */
    previous?: PolicyStore
  ) {
    const leases = previous?.leases ?? new LeaseTable<Admitter>()
    this.leases = leases
    this.compiled = new Map(Array.from(policies, (p) => {
      const kept = previous?.compiled.get(p.name)
      return [
        p.name,
        kept !== undefined && sameDefinition(kept.policy, p) ? kept : compile(p, leaseTtlMs, tables, leases)
      ]
    }))
    this.names = Array.from(this.compiled.keys())
    for (const [name, compiled] of this.compiled) {
      if (compiled.kind === "limiter") this.limiters.set(name, compiled.rate)
    }
  }

  /**
   * The store of `policies` after a reload: a policy whose definition is the same as here keeps its
   * compiled state (its key table, its admitter and the leases it holds); a changed or added one starts
   * fresh; a removed one is not carried. This store is left as it is (calls in flight finish on it).
   */
  next(policies: Iterable<Policy>): PolicyStore {
    return new PolicyStore(policies, this.leaseTtlMs, this.tables, this)
  }

  /** The compiled policy called `name`, or `undefined`. */
  get(name: string): Compiled | undefined {
    return this.compiled.get(name)
  }

  /** The fault of an unknown policy `name`. */
  notFound(name: string): PolicyNotFound {
    return new PolicyNotFound({ policy: name, configured: this.names })
  }

  /**
   * The rate state of the limiter `name` when `cost` is usable (a whole number in [1, 2^53 − 1]), else
   * `undefined`, and `faultOf` says why. The key is the caller's to check (see
   * `RateState.checkUnvalidated`).
   */
  limiterFor(name: string, cost: number): RateState | undefined {
    return Number.isSafeInteger(cost) && cost >= 1 ? this.limiters.get(name) : undefined
  }

  /**
   * Why a consuming `operation` of `cost` on `key` under `name` cannot run, checked in the order every
   * door checks them: the policy, then the key, then the cost. For a call that `limiterFor` or
   * `RateState.checkUnvalidated` turned down, so one of the three is at fault.
   */
  faultOf(name: string, key: string, cost: number, operation: OperationNotSupported["operation"]): Fault {
    const compiled = this.compiled.get(name)
    if (compiled === undefined) return this.notFound(name)
    if (compiled.kind !== "limiter") return unsupported(name, operation, compiled.kind)
    const keyProblem = Validate.keyProblem(key)
    if (keyProblem !== undefined) return new InvalidArgument({ argument: "key", reason: keyProblem })
    const costProblem = Validate.costProblem(cost)
    return new InvalidArgument({ argument: "cost", reason: costProblem ?? "is not usable" })
  }

  /** The rate state of the limiter `name`, or why `operation` cannot run on it. */
  rateOf(name: string, operation: OperationNotSupported["operation"]): RateState | Fault {
    const compiled = this.compiled.get(name)
    if (compiled === undefined) return this.notFound(name)
    if (compiled.kind !== "limiter") return unsupported(name, operation, compiled.kind)
    return compiled.rate
  }
}

/**
 * The fault of an operation the policy's kind does not serve.
 *
 * @since 0.1.0
 * @internal
 */
export const unsupported = (
  policy: string,
  operation: OperationNotSupported["operation"],
  kind: string
): OperationNotSupported => new OperationNotSupported({ policy, operation, reason: `a ${kind} policy` })

/**
 * One dimension of a multi-check on the Memory door: a rate state (a limiter's, or a meter's budget), a
 * key and a cost, all checked.
 *
 * @since 0.3.0
 * @internal
 */
export interface StateCheck {
  readonly state: RateState
  readonly key: string
  readonly cost: number
}

/**
 * A multi-check at `now`, all or nothing, in one synchronous step (nothing can run between the reads and
 * the writes): every dimension is decided on the current state, writing nothing (`RateState.preview`);
 * when all allow, and every table has room for its new keys (`RateState.roomFor`; a refusal denies those
 * keys' dimensions), each is checked for real, which decides exactly as its preview and writes. Otherwise
 * nothing is written. No two dimensions share a (state, key): the front refuses a repeated one.
 *
 * @since 0.3.0
 * @internal
 */
export const checkAllAt = (checks: ReadonlyArray<StateCheck>, now: number): ReadonlyArray<Decision> => {
  const previews = checks.map((c) => c.state.preview(c.key, now, c.cost))
  for (const decision of previews) if (!decision.allowed) return previews
  const byState = new Map<RateState, Array<string>>()
  for (const c of checks) {
    const keys = byState.get(c.state)
    if (keys === undefined) byState.set(c.state, [c.key])
    else keys.push(c.key)
  }
  for (const [state, keys] of byState) {
    const refusal = state.roomFor(keys, now)
    if (refusal !== undefined) {
      return checks.map((c, i) => c.state === state && !c.state.holds(c.key) ? refusal : previews[i]!)
    }
  }
  return checks.map((c) => c.state.check(c.key, now, c.cost))
}
