/**
 * Effect log lines captured in tests.
 */
import { Effect, Logger, LogLevel } from "effect"

/** Runs `effect` and collects the warning lines it logs: `[value, lines]`. */
export const warnings = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === LogLevel.Warning) lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const result = yield* Effect.provide(effect, Logger.replace(Logger.defaultLogger, logger))
    return [result, lines] as const
  })
