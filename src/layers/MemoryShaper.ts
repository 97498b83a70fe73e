/**
 * The in-process shaper store: one departure per key in a bounded table, on Effect's `Clock` (so
 * `TestClock` drives it), and the `Shaper` front over it (`make`, `layer`). Its rate is this process's
 * alone; `RedisShaper` shares one between processes.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as ShaperEngine from "../engine/shaper.js"
import { InvalidArgument } from "../Errors.js"
import {
  make as makeFront,
  reservationOf,
  Shaper,
  ShaperPolicy,
  type ShaperService,
  type ShaperStore
} from "../services/Shaper.js"
import { KeyTable } from "./memory/KeyStore.js"

/**
 * Options of the in-process shaper store.
 *
 * @since 0.3.0
 * @category models
 */
export interface MemoryShaperOptions {
  readonly shapers: ReadonlyArray<ShaperPolicy>
}

/** A key's next departure, updated in place. */
class Cell {
  declare departure: number
  constructor(departure: number) {
    this.departure = departure
  }
}

/** A key whose next departure is due reads as a fresh key's (an empty queue), and may be forgotten. */
const rules = {
  isFresh: (cell: Cell, now: number) => cell.departure <= now,
  expiresAt: (cell: Cell) => cell.departure
}

/**
 * The shapers, decoded (a bad one, or two with one name, is `InvalidArgument`).
 *
 * @since 0.3.0
 * @category constructors
 * @internal
 */
export const decodeShapers = (
  shapers: ReadonlyArray<ShaperPolicy>
): Effect.Effect<ReadonlyArray<ShaperPolicy>, InvalidArgument> =>
  Effect.flatMap(
    Effect.mapError(
      Schema.decodeUnknown(Schema.Array(ShaperPolicy))(shapers),
      (error) => new InvalidArgument({ argument: "shapers", reason: error.message })
    ),
    (decoded) => {
      const names = new Set(decoded.map((shaper) => shaper.name))
      return names.size === decoded.length
        ? Effect.succeed(decoded)
        : Effect.fail(new InvalidArgument({ argument: "shapers", reason: "two shapers have the same name" }))
    }
  )

/**
 * The in-process shaper store over already-decoded shapers.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeStore = (shapers: ReadonlyArray<ShaperPolicy>): ShaperStore => ({
  backend: "memory",
  shapers,
  bind: (shaper) => {
    const engine = ShaperEngine.make(shaper)
    // Only keys with an empty queue are forgotten, so the table never changes an answer; past
    // `maxKeys` live keys it grows.
    const table = new KeyTable<Cell>(shaper.maxKeys, rules, "grow", () => {})
    return {
      reserve: (key, cost) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          const cell = table.get(key, now)
          const outcome = engine.reserve(cell?.departure, now, cost)
          if (outcome.accepted) {
            if (cell === undefined) table.add(key, new Cell(outcome.end), now)
            else cell.departure = outcome.end
          }
          return Effect.succeed(reservationOf(shaper.name, key, cost, outcome))
        }),
      giveBack: (reservation) =>
        Effect.sync(() => {
          const cell = table.cellOf(reservation.key)
          const back = engine.giveBack(cell?.departure, reservation.start, reservation.end)
          if (cell === undefined || back === undefined) return false
          cell.departure = back
          return true
        })
    }
  }
})

/**
 * The in-process `Shaper` service: the front over `makeStore`. Fails with `InvalidArgument` for a bad
 * shaper.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: MemoryShaperOptions): Effect.Effect<ShaperService, InvalidArgument> =>
  Effect.map(decodeShapers(options.shapers), (shapers) => makeFront(makeStore(shapers)))

/**
 * The in-process `Shaper` as a layer.
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: MemoryShaperOptions): Layer.Layer<Shaper, InvalidArgument> =>
  Layer.effect(Shaper, make(options))
