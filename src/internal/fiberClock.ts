/**
 * The running fiber's `Clock`, read from plain code inside a synchronous step (`Effect.sync`): the same
 * clock `Effect.clockWith` hands over, without its extra runtime step. `Effect.clockWith` is a
 * `withFiberRuntime` step that builds a fiber status and then runs a second Effect; on an in-process
 * check those two steps cost more than the check itself (see bench/, `memory.hotKey.serviceVsEffectFloor`).
 *
 * The fiber whose step is running is the one the Effect 3 runtime keeps in its global slot
 * `"effect/FiberCurrent"` while the step runs (`Fiber.getCurrentFiber` reads the same slot, and wraps it in
 * an `Option`: an allocation per call, ~10 ns of a ~240 ns in-process check on the bench VM). Its
 * `currentDefaultServices` are that fiber's default services (a `TestClock` or `Effect.withClock` replaces
 * the clock there), cached by the fiber itself. The clock found for the last services seen is kept, so a
 * call pays one comparison. The `TestClock` tests of the Memory door fail if the slot ever moves.
 *
 * @since 0.3.0
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import type * as DefaultServices from "effect/DefaultServices"
import type * as Fiber from "effect/Fiber"

/** The global slot holding the fiber whose step is running (`effect/internal/fiber`'s `currentFiberURI`). */
const CURRENT_FIBER = "effect/FiberCurrent"

/** `globalThis`, seen as the holder of that slot. */
const runtimeSlots = globalThis as { readonly [CURRENT_FIBER]?: Fiber.RuntimeFiber<unknown, unknown> | null }

let lastServices: Context.Context<DefaultServices.DefaultServices> | undefined
let lastClock: Clock.Clock | undefined

/** The clock of `services`, remembered for the next call with the same services. */
const clockIn = (services: Context.Context<DefaultServices.DefaultServices>): Clock.Clock => {
  if (services === lastServices) return lastClock!
  const clock = services.unsafeMap.get(Clock.Clock.key) as Clock.Clock
  lastServices = services
  lastClock = clock
  return clock
}

/**
 * The current time in ms on the running fiber's `Clock`. Call it only inside a step of a fiber (an
 * `Effect.sync` body); outside any fiber there is no fiber clock, and it reads the system clock.
 *
 * @since 0.3.0
 * @internal
 */
export const fiberNowMillis = (): number => {
  const fiber = runtimeSlots[CURRENT_FIBER]
  return fiber === undefined || fiber === null
    ? Date.now()
    : clockIn(fiber.currentDefaultServices).unsafeCurrentTimeMillis()
}
