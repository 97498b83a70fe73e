/**
 * The in-process coordinator: budgets in this process's memory, time from Effect's `Clock` (so
 * `TestClock` drives it). It serves one process (the embedded default and tests); a fleet of servers
 * needs the shared `RedisCoordinator`.
 *
 * A budget is forgotten only once its window is over (forgetting it earlier would grant again within
 * the window, as a key flood once made it do). The table is swept of spent windows when it outgrows
 * `maxKeys` (100 000 by default), amortized over the inserts between sweeps; when more budgets than that
 * are live it grows past `maxKeys` and logs a warning once, so memory follows the live budgets.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { DEFAULT_MAX_KEYS } from "../Policy.js"
import { Coordinator, type CoordinatorService, reservationProblem } from "./Coordinator.js"
import * as Reserve from "./reserve.js"

/**
 * Options of the in-process coordinator.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryCoordinatorOptions {
  /**
   * About how many budgets are kept (default 100 000). Only budgets whose window is over are forgotten
   * (a forgotten budget would grant again): past `maxKeys` live budgets the table grows, and a warning
   * is logged once.
   */
  readonly maxKeys?: number
}

interface Entry {
  readonly reserver: Reserve.Reserver<unknown>
  readonly state: unknown
}

/**
 * Builds the in-process coordinator.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: MemoryCoordinatorOptions = {}): CoordinatorService => {
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS
  const entries = new Map<string, Entry>()
  // One reserver per distinct strategy (by its parameters, so equal strategies share budgets).
  const reservers = new Map<string, Reserve.Reserver<unknown>>()

  const reserverOf = (strategy: Reserve.WindowedStrategy) => {
    const signature = strategy.kind === "fixedWindow"
      ? `fixedWindow:${strategy.limit}:${strategy.windowMs}`
      : `slidingWindow:${strategy.limit}:${strategy.windowMs}:${strategy.buckets}`
    let reserver = reservers.get(signature)
    if (reserver === undefined) {
      reserver = Reserve.make(strategy)
      reservers.set(signature, reserver)
    }
    return reserver
  }

  // The table is swept (budgets whose window is over are dropped) when it outgrows `sweepAbove`, which
  // each sweep sets a tenth above what it left, so sweeps are amortized over the inserts in between.
  let sweepAbove = maxKeys
  let warned = false
  const sweep = (now: number): boolean => {
    for (const [key, entry] of entries) {
      if (entry.state === undefined || entry.reserver.expiresAt(entry.state, now) < now) entries.delete(key)
    }
    sweepAbove = Math.max(maxKeys, entries.size + Math.ceil(Math.max(maxKeys, entries.size) / 10))
    const full = entries.size > maxKeys && !warned
    if (full) warned = true
    return full
  }

  const reserve: CoordinatorService["reserve"] = (strategy, key, wants) => {
    const problem = reservationProblem(key, wants)
    if (problem !== undefined) return Effect.fail(problem)
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const reserver = reserverOf(strategy)
      const held = entries.get(key)
      // A key reused under another strategy starts afresh rather than misreading a foreign state.
      const state = held !== undefined && held.reserver === reserver &&
          held.state !== undefined && reserver.expiresAt(held.state, now) >= now
        ? held.state
        : undefined
      const step = reserver.reserve(state, now, wants)
      let full = false
      if (step.grant.granted > 0) {
        entries.set(key, { reserver, state: step.state })
        if (entries.size > sweepAbove) full = sweep(now)
      }
      return full
        ? Effect.as(
          Effect.logWarning(
            `MemoryCoordinator: more than ${maxKeys} budgets are live; the table grows past maxKeys ` +
              "(a budget is forgotten only once its window is over)"
          ),
          step.grant
        )
        : Effect.succeed(step.grant)
    })
  }

  return { store: "memory", reserve }
}

/**
 * The in-process coordinator as a layer (each build has its own budgets).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MemoryCoordinatorOptions = {}): Layer.Layer<Coordinator> =>
  Layer.sync(Coordinator, () => make(options))
