/**
 * The `now` ARGV the vendored scripts take: 0 selects the Redis server clock (the script reads `TIME`
 * itself); anything else is the instant in ms to decide at.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { InvalidArgument } from "../Errors.js"

/**
 * Whose clock a Redis door decides by: the Redis server's (the default, skew-free across a fleet) or
 * Effect's `Clock`.
 *
 * @since 0.1.0
 * @category models
 */
export type ScriptClock = "redis" | "effect"

/**
 * The `now` ARGV for `clock`: always 0 for the Redis clock; for Effect's clock its current reading, which
 * must be a real instant (at least 1 ms; 0 would silently select the Redis clock), else `InvalidArgument`.
 *
 * @since 0.1.0
 * @category utils
 */
export const scriptNow = (clock: ScriptClock | undefined): Effect.Effect<number, InvalidArgument> =>
  clock === "effect"
    ? Effect.flatMap(Clock.currentTimeMillis, (ms) =>
      ms >= 1
        ? Effect.succeed(ms)
        : Effect.fail(
          new InvalidArgument({
            argument: "clock",
            reason: `Effect's clock reads ${ms} ms; 0 would select the Redis clock (advance a TestClock first)`
          })
        ))
    : Effect.succeed(0)
