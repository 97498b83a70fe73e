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
import type { Decision, DecisionData } from "../../Decision.js"
import { Admitter } from "../../engine/admission.js"
import * as Gcra from "../../engine/gcra.js"
import { rateEngine } from "../../engine/index.js"
import { boxed } from "../../engine/internal.js"
import * as TokenBudget from "../../engine/tokenBudget.js"
import type { ForecastData, InPlaceEngine, RateEngine } from "../../engine/types.js"
import { InvalidArgument, OperationNotSupported, PolicyNotFound } from "../../Errors.js"
import type { AdmitterPolicy, LimiterPolicy, MeterPolicy, Policy, Strategy } from "../../Policy.js"
import * as Validate from "../../Validate.js"

/**
 * One key's state and the table's write count when it was last written (its recency).
 *
 * A class, not an object literal: V8 tracks each literal's allocation site and, seeing every slot of a
 * filling table survive, allocates that site's objects straight into the old generation; with slots
 * built there, the states written into them ran up to 5× slower on 10k keys. A constructor carries no
 * such site.
 *
 * @since 0.1.0
 * @internal
 */
export class Slot<S> {
  // `declare`d fields set in the constructor, not parameter properties: see `Gcra.Cell`.
  declare state: S
  declare written: number
  constructor(state: S, written: number) {
    this.state = state
    this.written = written
  }
}

/**
 * A per-policy key table with a cap: expired entries go first, then the least recently written.
 *
 * A write updates the key's slot in place and stamps it with a write counter. (Keeping the Map itself in
 * write order by deleting and re-inserting the key on every write looks cheaper, but V8 then walks a
 * growing chain of deleted entries on every lookup of a hot key: tens of µs per check once the table
 * holds thousands of keys.)
 *
 * @since 0.1.0
 * @internal
 */
export class KeyTable<S> {
  private readonly entries = new Map<string, Slot<S>>()
  private writes = 0
  constructor(
    private readonly maxKeys: number,
    private readonly expiresAt: (state: S, now: number) => number
  ) {}

  /** The live state of `key` at `now` (an expired one is dropped). */
  get(key: string, now: number): S | undefined {
    const slot = this.entries.get(key)
    if (slot === undefined) return undefined
    if (this.expiresAt(slot.state, now) < now) {
      this.entries.delete(key)
      return undefined
    }
    return slot.state
  }

  /**
   * The slot of `key`, live or expired, for a read-then-write with one lookup: update its state in place
   * and `touch` it, or `add` the key when there is no slot.
   */
  slotOf(key: string): Slot<S> | undefined {
    return this.entries.get(key)
  }

  /** Marks `slot`, whose state was just updated in place, as the most recently written. */
  touch(slot: Slot<S>): void {
    slot.written = ++this.writes
  }

  /** Drops `key` (an expired slot that a denied check did not rewrite). */
  drop(key: string): void {
    this.entries.delete(key)
  }

  /** Stores `state` under `key`, which the table does not hold, evicting when the table is over its cap. */
  add(key: string, state: S, now: number): void {
    this.entries.set(key, new Slot(state, ++this.writes))
    if (this.entries.size > this.maxKeys) this.evict(now)
  }

  /** Stores `state` under `key` (`undefined` deletes it), evicting when the table is over its cap. */
  set(key: string, state: S | undefined, now: number): void {
    if (state === undefined) {
      this.entries.delete(key)
      return
    }
    const slot = this.entries.get(key)
    if (slot !== undefined) {
      slot.state = state
      this.touch(slot)
      return
    }
    this.add(key, state, now)
  }

  /** How many keys the table holds (expired ones included until touched or evicted). */
  get size(): number {
    return this.entries.size
  }

  /**
   * Brings the table back under its cap in one pass, amortized: it drops expired state, then every key
   * not written in the last `keep` writes (at most `keep` keys were, since each write stamps one slot),
   * so the next eviction is about a tenth of `maxKeys` inserts away and a check never scans the table.
   */
  private evict(now: number): void {
    const keep = Math.max(1, Math.floor(this.maxKeys * 0.9))
    const oldestKept = this.writes - keep
    for (const [key, slot] of this.entries) {
      if (slot.written <= oldestKept || this.expiresAt(slot.state, now) < now) this.entries.delete(key)
    }
  }
}

/**
 * A rate strategy with its key table. The table holds one cell per key, which the strategy's in-place
 * check updates (`InPlaceEngine`): a GCRA check allocates nothing but its decision; any other strategy's
 * cell is a box whose state each allowed check replaces (`boxed`).
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
  private constructor(
    /** The strategy's pure functions, on the states the cells hold (peek, forecast). */
    private readonly engine: RateEngine<unknown>,
    private readonly cells: InPlaceEngine<unknown, unknown>,
    maxKeys: number
  ) {
    this.table = new KeyTable(maxKeys, cells.expiresAt)
  }

  /** The rate state of `strategy`, keeping at most `maxKeys` keys. */
  static of(strategy: Strategy, maxKeys: number): RateState {
    if (strategy.kind === "gcra") {
      const engine = Gcra.make(strategy)
      return RateState.erased(engine, engine.inPlace, maxKeys)
    }
    const engine = rateEngine(strategy)
    return RateState.erased(engine, boxed(engine), maxKeys)
  }

  /**
   * Forgets the cell and state types (see `rateEngine`: the functions are only ever given cells this
   * same engine made, and the states those cells hold).
   */
  private static erased<C, S>(engine: RateEngine<S>, cells: InPlaceEngine<C, S>, maxKeys: number): RateState {
    return new RateState(
      engine as unknown as RateEngine<unknown>,
      cells as unknown as InPlaceEngine<unknown, unknown>,
      maxKeys
    )
  }

  /** A consuming check of a key already validated: the state is written only when allowed. */
  check(key: string, now: number, cost: number): Decision {
    const slot = this.table.slotOf(key)
    return slot === undefined ? this.checkFresh(key, now, cost) : this.checkStored(key, slot, now, cost)
  }

  /**
   * `check` for a key not validated yet: one the table does not hold is validated first, and
   * `undefined` means it is not a usable key (nothing was touched; `Validate.keyProblem` says why).
   * `undefined` rather than the error itself: telling a tagged error from a decision by `instanceof`
   * cost a third of the whole check.
   */
  checkUnvalidated(key: string, now: number, cost: number): Decision | undefined {
    const slot = this.table.slotOf(key)
    if (slot !== undefined) return this.checkStored(key, slot, now, cost)
    return Validate.keyProblem(key) === undefined ? this.checkFresh(key, now, cost) : undefined
  }

  /**
   * A check of a key the table holds, in its cell. An expired cell reads as no state: an allowed check
   * writes it afresh, a denied one drops the key (the outcome of dropping it on read and inserting
   * anew, with one lookup). Kept small (the denial and the insert live elsewhere) so the JIT inlines it
   * and the engine's check into the caller.
   */
  private checkStored(key: string, slot: Slot<unknown>, now: number, cost: number): Decision {
    const cell = slot.state
    const live = now <= this.cells.expiresAt(cell, now)
    const decision = this.cells.checkInPlace(cell, live, now, cost)
    if (decision.allowed) this.table.touch(slot)
    else if (!live) this.table.drop(key)
    return decision
  }

  /** A check of a key the table does not hold: a new cell, stored when the check is allowed. */
  private checkFresh(key: string, now: number, cost: number): Decision {
    const cell = this.cells.emptyCell()
    const decision = this.cells.checkInPlace(cell, false, now, cost)
    if (decision.allowed) this.table.add(key, cell, now)
    return decision
  }

  /** The live state of `key` at `now` as the engine's pure functions take it, or `undefined`. */
  private stateAt(key: string, now: number): unknown {
    const cell = this.table.get(key, now)
    return cell === undefined ? undefined : this.cells.stateOf(cell)
  }

  /** A read-only check of cost 1. */
  peek(key: string, now: number): DecisionData {
    return this.engine.peek(this.stateAt(key, now), now)
  }

  /** What `key` can take at `now`, in units of `cost` (read-only). */
  forecast(key: string, now: number, cost: number): ForecastData {
    return this.engine.forecast(this.stateAt(key, now), now, cost)
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
  | {
    readonly kind: "meter"
    readonly policy: MeterPolicy
    readonly table: KeyTable<TokenBudget.State>
    readonly budget: TokenBudget.Options
  }
  | { readonly kind: "admitter"; readonly policy: AdmitterPolicy; readonly admitter: Admitter }

const compile = (policy: Policy, leaseTtlMs: number): Compiled => {
  switch (policy.kind) {
    case "limiter":
      return { kind: "limiter", policy, rate: RateState.of(policy.strategy, policy.maxKeys) }
    case "meter": {
      const budget: TokenBudget.Options = { budget: policy.budget, windowMs: policy.windowMs }
      return { kind: "meter", policy, budget, table: new KeyTable(policy.maxKeys, TokenBudget.expiresAt) }
    }
    case "admitter":
      return {
        kind: "admitter",
        policy,
        admitter: new Admitter(
          policy.concurrency,
          policy.rate === undefined ? undefined : RateState.of(policy.rate, policy.maxKeys),
          leaseTtlMs
        )
      }
  }
}

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

  /** Compiles `policies`; admitters' leases live `leaseTtlMs` without renewal. */
  constructor(policies: Iterable<Policy>, leaseTtlMs: number) {
    this.compiled = new Map(Array.from(policies, (p) => [p.name, compile(p, leaseTtlMs)]))
    this.names = Array.from(this.compiled.keys())
    for (const [name, compiled] of this.compiled) {
      if (compiled.kind === "limiter") this.limiters.set(name, compiled.rate)
    }
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
