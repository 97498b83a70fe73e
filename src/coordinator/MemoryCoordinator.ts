/**
 * The in-process coordinator: budgets in this process's memory, time from Effect's `Clock` (so
 * `TestClock` drives it). It serves one process (the embedded default and tests); a fleet of servers
 * needs the shared `RedisCoordinator`.
 *
 * Memory is bounded: at most `maxKeys` budgets (expired ones are dropped first, then the least recently
 * written). Dropping a budget early can only grant more later within the same window, so the bound is
 * generous (100 000 by default) and only an adversarial key flood reaches it.
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
  /** The most budgets kept at once (default 100 000). */
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

  const evict = (now: number) => {
    for (const [key, entry] of entries) {
      if (entry.state === undefined || entry.reserver.expiresAt(entry.state, now) < now) entries.delete(key)
    }
    let excess = entries.size - maxKeys
    for (const key of entries.keys()) {
      if (excess-- <= 0) break
      entries.delete(key)
    }
  }

  const reserve: CoordinatorService["reserve"] = (strategy, key, wants) => {
    const problem = reservationProblem(key, wants)
    if (problem !== undefined) return Effect.fail(problem)
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const reserver = reserverOf(strategy)
      const held = entries.get(key)
      // A key reused under another strategy starts afresh rather than misreading a foreign state.
      const state = held !== undefined && held.reserver === reserver &&
          held.state !== undefined && reserver.expiresAt(held.state, now) >= now
        ? held.state
        : undefined
      const step = reserver.reserve(state, now, wants)
      if (step.grant.granted > 0) {
        entries.delete(key)
        entries.set(key, { reserver, state: step.state })
        if (entries.size > maxKeys) evict(now)
      }
      return step.grant
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
