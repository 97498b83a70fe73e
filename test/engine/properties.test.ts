/**
 * Properties of the pure rate engines and the token budget over random parameters and op sequences:
 * decision invariants, "a denial writes nothing", admission bounds per strategy, peek/forecast agreeing
 * with check, the key expiry never dropping a state that still matters, a state that reads fresh (what
 * a Memory key table may forget) deciding as no state, and the in-place check (what the Memory door's
 * key tables run) agreeing with the pure one.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import type { DecisionData } from "../../src/Decision.js"
import * as Gcra from "../../src/engine/gcra.js"
import { rateEngine } from "../../src/engine/index.js"
import { boxed } from "../../src/engine/internal.js"
import * as TokenBudget from "../../src/engine/tokenBudget.js"
import type { InPlaceEngine, RateEngine } from "../../src/engine/types.js"
import { type Quota, reportedLimit, type Strategy } from "../../src/Policy.js"
import { oraclePeriod } from "../support/quotaCalendar.js"
import { timeScaleOf } from "../support/strategyScale.js"

const RUNS = Number(process.env["ENGINE_PROP_RUNS"] ?? 300)

// ---------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------

const gcraArb = fc.record({
  kind: fc.constant("gcra" as const),
  limit: fc.integer({ min: 1, max: 40 }),
  periodMs: fc.oneof(fc.constantFrom(1, 7, 100, 1000, 60_000), fc.integer({ min: 1, max: 100_000 })),
  burst: fc.integer({ min: 1, max: 40 })
})
const tokenBucketArb = fc.record({
  kind: fc.constant("tokenBucket" as const),
  capacity: fc.integer({ min: 1, max: 40 }),
  refillPerSec: fc.oneof(
    fc.integer({ min: 1, max: 200 }),
    fc.double({ min: 0.05, max: 200, noNaN: true, noDefaultInfinity: true })
  )
})
const fixedWindowArb = fc.record({
  kind: fc.constant("fixedWindow" as const),
  limit: fc.integer({ min: 1, max: 40 }),
  windowMs: fc.integer({ min: 1, max: 5_000 })
})
const slidingWindowArb = fc.record({
  kind: fc.constant("slidingWindow" as const),
  limit: fc.integer({ min: 1, max: 40 }),
  windowMs: fc.integer({ min: 1, max: 5_000 }),
  buckets: fc.integer({ min: 1, max: 16 })
})
const slidingWindowLogArb = fc.record({
  kind: fc.constant("slidingWindowLog" as const),
  limit: fc.integer({ min: 1, max: 40 }),
  windowMs: fc.integer({ min: 1, max: 5_000 })
})

const quotaArb: fc.Arbitrary<Quota> = fc.oneof(
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constantFrom("calendar-month" as const, "calendar-day" as const),
    limit: fc.integer({ min: 1, max: 40 }),
    offsetMinutes: fc.integer({ min: -840, max: 840 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("calendar-week" as const),
    limit: fc.integer({ min: 1, max: 40 }),
    offsetMinutes: fc.integer({ min: -840, max: 840 }),
    weekStartsOn: fc.integer({ min: 0, max: 6 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("fixed" as const),
    limit: fc.integer({ min: 1, max: 40 }),
    periodMs: fc.integer({ min: 1, max: 5_000 }),
    anchor: fc.integer({ min: -100_000, max: 100_000 })
  }),
  fc.record({
    kind: fc.constant("quota" as const),
    resetCadence: fc.constant("rolling" as const),
    limit: fc.integer({ min: 1, max: 40 }),
    periodMs: fc.integer({ min: 16, max: 5_000 }),
    buckets: fc.integer({ min: 1, max: 16 })
  })
)

/** A sliding window, or a rolling quota (which is one). */
const isSliding = (strategy: Strategy): boolean =>
  strategy.kind === "slidingWindow" || (strategy.kind === "quota" && strategy.resetCadence === "rolling")

/** How time moves before an op: by `dt`, or to the next multiple of the scale, plus -1, 0 or +1 ms. */
type TimeMove = { readonly _tag: "step"; readonly dt: number } | { readonly _tag: "boundary"; readonly offset: number }

interface Op {
  readonly move: TimeMove
  readonly cost: number
}

const opsArb = (scale: number, limit: number): fc.Arbitrary<ReadonlyArray<Op>> => {
  const span = Math.max(2, Math.ceil(scale))
  const move: fc.Arbitrary<TimeMove> = fc.oneof(
    { weight: 4, arbitrary: fc.constant<TimeMove>({ _tag: "step", dt: 0 }) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 3 }).map((dt): TimeMove => ({ _tag: "step", dt })) },
    { weight: 4, arbitrary: fc.integer({ min: 0, max: span * 2 }).map((dt): TimeMove => ({ _tag: "step", dt })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: span * 40 }).map((dt): TimeMove => ({ _tag: "step", dt })) },
    { weight: 3, arbitrary: fc.constantFrom(-1, 0, 1).map((offset): TimeMove => ({ _tag: "boundary", offset })) }
  )
  const cost = fc.oneof(
    { weight: 6, arbitrary: fc.constant(1) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: Math.max(1, limit) }) },
    { weight: 1, arbitrary: fc.integer({ min: limit, max: limit * 3 + 2 }) }
  )
  return fc.array(fc.record({ move, cost }), { minLength: 1, maxLength: 60 })
}

const epochArb = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 0, max: 100_000 }),
  fc.integer({ min: 1_700_000_000_000, max: 1_700_000_100_000 })
)

const scenarioArb = fc
  .oneof(gcraArb, tokenBucketArb, fixedWindowArb, slidingWindowArb, slidingWindowLogArb, quotaArb)
  .chain((strategy: Strategy) =>
    fc.record({
      strategy: fc.constant(strategy),
      start: epochArb,
      ops: opsArb(timeScaleOf(strategy), reportedLimit(strategy))
    })
  )

const advance = (now: number, move: TimeMove, scale: number): number => {
  if (move._tag === "step") return now + move.dt
  const boundary = Math.ceil((Math.floor(now / scale) + 1) * scale)
  return Math.max(now, boundary + move.offset)
}

// ---------------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------------

interface Event {
  readonly now: number
  readonly cost: number
  readonly before: unknown
  readonly decision: DecisionData
  readonly after: unknown
}

const replay = (strategy: Strategy, start: number, ops: ReadonlyArray<Op>) => {
  const engine = rateEngine(strategy)
  const scale = timeScaleOf(strategy)
  const events: Array<Event> = []
  let state: unknown = undefined
  let now = start
  for (const op of ops) {
    now = advance(now, op.move, scale)
    const step = engine.check(state, now, op.cost)
    events.push({ now, cost: op.cost, before: state, decision: step.decision, after: step.state })
    state = step.state
  }
  return { engine, events }
}

/** How many checks of `cost` in a row are admitted at `now` from `state`. */
const admittedInARow = (engine: RateEngine<unknown>, state: unknown, now: number, cost: number): number => {
  let count = 0
  let current = state
  for (;;) {
    const step = engine.check(current, now, cost)
    if (!step.decision.allowed) return count
    current = step.state
    count++
    if (count > 100_000) throw new Error("runaway admission")
  }
}

const isWhole = (n: number): boolean => Number.isSafeInteger(n)

const expectDecisionShape = (decision: DecisionData, limit: number, now: number): void => {
  expect(isWhole(decision.limit) && isWhole(decision.remaining)).toBe(true)
  expect(isWhole(decision.resetAt) && isWhole(decision.retryAfterMs)).toBe(true)
  expect(decision.limit).toBe(limit)
  expect(decision.remaining).toBeGreaterThanOrEqual(0)
  expect(decision.resetAt).toBeGreaterThanOrEqual(now)
  if (decision.allowed) expect(decision.retryAfterMs).toBe(0)
  else expect(decision.retryAfterMs).toBeGreaterThanOrEqual(1)
}

const withoutExpiry = (state: unknown): unknown =>
  typeof state === "object" && state !== null ? { ...state, expiresAt: Number.POSITIVE_INFINITY } : state

/** A copy of a state's own fields (to tell whether anything wrote into it). */
const fieldsOf = (state: unknown): unknown =>
  typeof state === "object" && state !== null ? structuredClone({ ...state }) : state

/**
 * Replays `ops` through the pure `engine.check` and, as a Memory key table runs it, through `cells`: one
 * cell per key, read as no state once expired, dropped when such a check is denied. Every decision must
 * be the same, an allowed check must leave the cell holding the pure state, a denied one must leave it
 * as it was, and the pure check must never write into the state it is given (frozen here).
 */
const expectInPlaceAgrees = <C, S>(
  engine: RateEngine<S>,
  cells: InPlaceEngine<C, S>,
  strategy: Strategy,
  start: number,
  ops: ReadonlyArray<Op>
): void => {
  const scale = timeScaleOf(strategy)
  let state: S | undefined = undefined
  let cell: C | undefined = undefined
  let now = start
  for (const op of ops) {
    now = advance(now, op.move, scale)
    const step = engine.check(state === undefined ? undefined : Object.freeze(state), now, op.cost)
    const held: C = cell ?? cells.emptyCell()
    const live = cell !== undefined && now <= cells.expiresAt(held, now)
    const before = fieldsOf(cells.stateOf(held))
    const decision = cells.checkInPlace(held, live, now, op.cost)
    expect(decision).toEqual(step.decision)
    if (decision.allowed) {
      expect(fieldsOf(cells.stateOf(held))).toEqual(fieldsOf(step.state))
      cell = held
    } else {
      expect(fieldsOf(cells.stateOf(held))).toEqual(before)
      if (!live) cell = undefined
    }
    state = step.state
  }
}

/**
 * Replays `ops` on one cell as a Memory key table runs it and checks, after each, that the cell reads
 * fresh (at the op's instant and `later` ms on) exactly when the state it holds does; an empty cell does.
 */
const expectCellFreshAgrees = <C, S>(
  engine: RateEngine<S>,
  cells: InPlaceEngine<C, S>,
  strategy: Strategy,
  start: number,
  ops: ReadonlyArray<Op>,
  later: number
): void => {
  const scale = timeScaleOf(strategy)
  const cell = cells.emptyCell()
  expect(cells.isFresh(cell, start)).toBe(true)
  let now = start
  let live = false
  for (const op of ops) {
    now = advance(now, op.move, scale)
    live = live && now <= cells.expiresAt(cell, now)
    if (cells.checkInPlace(cell, live, now, op.cost).allowed) live = true
    const state = cells.stateOf(cell)
    for (const t of [now, now + later]) {
      expect(cells.isFresh(cell, t)).toBe(state === undefined || engine.isFresh(state, t))
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------------

describe("engine properties", () => {
  it("decisions are whole, non-negative and consistent; a denial returns the input state", () => {
    fc.assert(
      fc.property(scenarioArb, ({ ops, start, strategy }) => {
        const { events } = replay(strategy, start, ops)
        for (const event of events) {
          expectDecisionShape(event.decision, reportedLimit(strategy), event.now)
          if (!event.decision.allowed) expect(event.after).toBe(event.before)
          else expect(event.after).not.toBe(undefined)
        }
      }),
      { numRuns: RUNS }
    )
  })

  it("never admits more than the strategy allows", () => {
    fc.assert(
      fc.property(scenarioArb, ({ ops, start, strategy }) => {
        const { events } = replay(strategy, start, ops)
        const admitted = events.filter((e) => e.decision.allowed)
        switch (strategy.kind) {
          case "fixedWindow": {
            // Exact model: admitted iff the window's admitted units + cost <= limit.
            const used = new Map<number, number>()
            for (const e of events) {
              const window = Math.floor(e.now / strategy.windowMs)
              const sum = used.get(window) ?? 0
              expect(e.decision.allowed).toBe(sum + e.cost <= strategy.limit)
              if (e.decision.allowed) used.set(window, sum + e.cost)
            }
            break
          }
          case "slidingWindowLog": {
            // Exact model: admitted iff the units admitted in (now - windowMs, now] + cost <= limit.
            const log: Array<{ at: number; cost: number }> = []
            for (const e of events) {
              const inWindow = log.filter((x) => x.at > e.now - strategy.windowMs).reduce((n, x) => n + x.cost, 0)
              expect(e.decision.allowed).toBe(inWindow + e.cost <= strategy.limit)
              if (e.decision.allowed) log.push({ at: e.now, cost: e.cost })
            }
            break
          }
          case "quota":
          case "slidingWindow": {
            if (strategy.kind === "quota" && strategy.resetCadence !== "rolling") {
              // Exact model: admitted iff the (oracle's) period's admitted units + cost <= limit.
              const used = new Map<number, number>()
              for (const e of events) {
                const period = oraclePeriod(strategy, e.now).start
                const sum = used.get(period) ?? 0
                expect(e.decision.allowed).toBe(sum + e.cost <= strategy.limit)
                if (e.decision.allowed) used.set(period, sum + e.cost)
              }
              break
            }
            // Sound bound: over any `buckets` consecutive ticks (one tick-aligned window), at most `limit`.
            const { buckets, windowMs } = strategy.kind === "slidingWindow"
              ? strategy
              : { buckets: strategy.buckets, windowMs: strategy.periodMs }
            const w = windowMs / buckets
            const ticks = admitted.map((e) => ({ tick: Math.floor(e.now / w), cost: e.cost }))
            for (const last of ticks) {
              const sum = ticks
                .filter((x) => x.tick > last.tick - buckets && x.tick <= last.tick)
                .reduce((n, x) => n + x.cost, 0)
              expect(sum).toBeLessThanOrEqual(strategy.limit)
            }
            break
          }
          case "gcra":
          case "tokenBucket": {
            // Over any span [t_i, t_j]: admitted units <= burst + span / T (capacity + span * rate).
            const ceiling = strategy.kind === "gcra" ? strategy.burst : strategy.capacity
            const perMs = strategy.kind === "gcra"
              ? strategy.limit / strategy.periodMs
              : strategy.refillPerSec / 1000
            for (let i = 0; i < admitted.length; i++) {
              let units = 0
              for (let j = i; j < admitted.length; j++) {
                units += admitted[j]!.cost
                const span = admitted[j]!.now - admitted[i]!.now
                expect(units).toBeLessThanOrEqual(ceiling + span * perMs + 1e-6)
              }
            }
            break
          }
        }
      }),
      { numRuns: RUNS }
    )
  })

  it("peek changes nothing and agrees with a cost-1 check", () => {
    fc.assert(
      fc.property(scenarioArb, ({ ops, start, strategy }) => {
        const { engine, events } = replay(strategy, start, ops)
        for (const { after: state, now } of events) {
          const snapshot = structuredClone(state)
          const peeked = engine.peek(state, now)
          expect(state).toEqual(snapshot)
          expectDecisionShape(peeked, reportedLimit(strategy), now)
          const checked = engine.check(state, now, 1).decision
          expect(peeked.allowed).toBe(checked.allowed)
          if (!checked.allowed) {
            expect(peeked).toEqual(checked)
          } else {
            expect(peeked.remaining).toBeGreaterThanOrEqual(1)
            if (strategy.kind !== "gcra" && !isSliding(strategy)) {
              // Exact arithmetic: taking one unit leaves one fewer.
              expect(checked.remaining).toBe(peeked.remaining - 1)
            }
          }
        }
      }),
      { numRuns: RUNS }
    )
  })

  it("forecast counts the back-to-back admissions and the replenish instants", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 1, max: 45 }), ({ ops, start, strategy }, cost) => {
        const { engine, events } = replay(strategy, start, ops)
        for (const { after: state, now } of events) {
          const snapshot = structuredClone(state)
          const forecast = engine.forecast(state, now, cost)
          expect(state).toEqual(snapshot)
          expect(forecast.spendableNow).toBe(admittedInARow(engine, state, now, cost))
          expect(isWhole(forecast.nextReplenishAt) && isWhole(forecast.fullAt)).toBe(true)
          expect(forecast.nextReplenishAt).toBeGreaterThanOrEqual(now)
          expect(forecast.fullAt).toBeGreaterThanOrEqual(forecast.nextReplenishAt)
          const remainingNow = engine.peek(state, now).remaining
          const fresh = (t: number) => engine.peek(undefined, t).remaining
          // At fullAt the key reads as fresh.
          expect(engine.peek(state, forecast.fullAt).remaining).toBe(fresh(forecast.fullAt))
          if (forecast.nextReplenishAt === now) {
            expect(forecast.fullAt).toBe(now)
            expect(remainingNow).toBe(fresh(now))
          } else {
            // Capacity grows by at least one unit at nextReplenishAt, and not a ms earlier.
            expect(engine.peek(state, forecast.nextReplenishAt).remaining).toBeGreaterThan(remainingNow)
            if (forecast.nextReplenishAt - 1 > now) {
              expect(engine.peek(state, forecast.nextReplenishAt - 1).remaining).toBe(remainingNow)
            }
          }
        }
      }),
      { numRuns: RUNS }
    )
  })

  it("a state past its key expiry decides exactly like no state (the expiry is never early)", () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.integer({ min: 1, max: 45 }),
        fc.integer({ min: 1, max: 10_000 }),
        ({ ops, start, strategy }, cost, after) => {
          const { engine, events } = replay(strategy, start, ops)
          for (const { after: state, decision, now } of events) {
            if (state === undefined) continue
            const expiresAt = engine.expiresAt(state, now)
            // A write always leaves a key that outlives the instant it was written.
            if (decision.allowed) expect(expiresAt).toBeGreaterThan(now)
            for (const t of [expiresAt + 1, expiresAt + after]) {
              // With the expiry ignored, the stale state must already be indistinguishable from no state.
              const stale = withoutExpiry(state)
              expect(engine.check(stale, t, cost).decision).toEqual(engine.check(undefined, t, cost).decision)
              expect(engine.peek(stale, t)).toEqual(engine.peek(undefined, t))
              expect(engine.forecast(stale, t, cost)).toEqual(engine.forecast(undefined, t, cost))
              // And past the expiry the engine itself treats it as absent.
              expect(engine.check(state, t, cost).decision).toEqual(engine.check(undefined, t, cost).decision)
            }
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  it("a state that reads fresh decides like no state then and at every later instant, and stays fresh", () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.integer({ min: 1, max: 45 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 1, max: 45 }),
        ({ ops, start, strategy }, cost, later, nextCost) => {
          const { engine, events } = replay(strategy, start, ops)
          for (const { after: state, now } of events) {
            if (state === undefined) continue
            const expiresAt = engine.expiresAt(state, now)
            const fullAt = engine.forecast(state, now, 1).fullAt
            // Never later than the expiry; for the strategies whose capacity returns exactly, not later
            // than the instant the forecast calls full either (GCRA: its TAT).
            expect(engine.isFresh(state, expiresAt + 1)).toBe(true)
            if (strategy.kind === "gcra") expect(engine.isFresh(state, Math.ceil((state as Gcra.State).tat))).toBe(true)
            else if (!isSliding(strategy)) expect(engine.isFresh(state, fullAt)).toBe(true)
            for (const t of [now, now + 1, fullAt, Math.floor((now + expiresAt) / 2), expiresAt]) {
              if (!engine.isFresh(state, t)) continue
              for (const u of [t, t + later]) {
                expect(engine.isFresh(state, u)).toBe(true)
                expect(engine.check(state, u, cost).decision).toEqual(engine.check(undefined, u, cost).decision)
                expect(engine.peek(state, u)).toEqual(engine.peek(undefined, u))
                expect(engine.forecast(state, u, cost)).toEqual(engine.forecast(undefined, u, cost))
                // And what a check writes decides on as what it writes on no state.
                const written = engine.check(state, u, cost).state
                const fresh = engine.check(undefined, u, cost).state
                for (const v of [u, u + 1, u + later]) {
                  expect(engine.check(written, v, nextCost).decision).toEqual(engine.check(fresh, v, nextCost).decision)
                }
              }
            }
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  it("the in-place cell reads fresh exactly when its state does; an empty cell reads fresh", () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.integer({ min: 0, max: 10_000 }),
        ({ ops, start, strategy }, later) =>
          strategy.kind === "gcra"
            ? expectCellFreshAgrees(Gcra.make(strategy), Gcra.make(strategy).inPlace, strategy, start, ops, later)
            : expectCellFreshAgrees(rateEngine(strategy), boxed(rateEngine(strategy)), strategy, start, ops, later)
      ),
      { numRuns: RUNS }
    )
  })

  it("the in-place check decides as check does, and its cell holds check's state; check never writes its input", () => {
    fc.assert(
      fc.property(scenarioArb, ({ ops, start, strategy }) =>
        strategy.kind === "gcra"
          ? expectInPlaceAgrees(Gcra.make(strategy), Gcra.make(strategy).inPlace, strategy, start, ops)
          : expectInPlaceAgrees(rateEngine(strategy), boxed(rateEngine(strategy)), strategy, start, ops)),
      { numRuns: RUNS }
    )
  })
})

// ---------------------------------------------------------------------------------------------------
// Token budget
// ---------------------------------------------------------------------------------------------------

const budgetScenarioArb = fc
  .record({ budget: fc.integer({ min: 1, max: 60 }), windowMs: fc.integer({ min: 1, max: 5_000 }) })
  .chain((options) =>
    fc.record({
      options: fc.constant(options),
      start: epochArb,
      ops: opsArb(options.windowMs, options.budget)
    })
  )

describe("token budget properties", () => {
  it("admits a debit iff budget remains before it, and peek/forecast agree", () => {
    fc.assert(
      fc.property(budgetScenarioArb, fc.integer({ min: 1, max: 70 }), ({ ops, options, start }, probe) => {
        const engine = TokenBudget.make(options)
        const spent = new Map<number, number>()
        let state: TokenBudget.State | undefined = undefined
        let now = start
        for (const op of ops) {
          now = advance(now, op.move, options.windowMs)
          const window = Math.floor(now / options.windowMs)
          const before = spent.get(window) ?? 0
          const step = engine.debit(state, now, op.cost)
          expectDecisionShape(step.decision, options.budget, now)
          expect(step.decision.allowed).toBe(before < options.budget)
          expect(step.decision.resetAt).toBe((window + 1) * options.windowMs)
          if (step.decision.allowed) {
            spent.set(window, before + op.cost)
            expect(step.decision.remaining).toBe(Math.max(0, options.budget - before - op.cost))
          } else {
            expect(step.state).toBe(state)
            expect(step.decision.retryAfterMs).toBe((window + 1) * options.windowMs - now)
          }
          state = step.state

          const peeked = engine.peek(state, now)
          expect(peeked.allowed).toBe(engine.debit(state, now, 1).decision.allowed)
          expect(peeked.remaining).toBe(Math.max(0, options.budget - (spent.get(window) ?? 0)))
          const forecast = engine.forecast(state, now, probe)
          let count = 0
          let s = state
          for (let step = engine.debit(s, now, probe); step.decision.allowed; step = engine.debit(s, now, probe)) {
            s = step.state
            count++
          }
          expect(forecast.spendableNow).toBe(count)
          if (state !== undefined) {
            // Fresh at the window's end (and never later than the expiry); once fresh, a debit and a
            // peek decide as on no state, then and later.
            expect(TokenBudget.isFresh(options, state, forecast.fullAt)).toBe(true)
            expect(TokenBudget.isFresh(options, state, state.expiresAt + 1)).toBe(true)
            for (const t of [now, forecast.fullAt, forecast.fullAt + probe]) {
              if (!TokenBudget.isFresh(options, state, t)) continue
              expect(engine.debit(state, t, probe).decision).toEqual(engine.debit(undefined, t, probe).decision)
              expect(engine.peek(state, t)).toEqual(engine.peek(undefined, t))
              expect(engine.forecast(state, t, probe)).toEqual(engine.forecast(undefined, t, probe))
            }
          }
        }
      }),
      { numRuns: RUNS }
    )
  })
})
