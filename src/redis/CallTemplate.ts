/**
 * A script call prebuilt once per policy: the EVALSHA arguments with every ARGV fixed except `now` and
 * the amount (`cost`, or `wants` for a reservation), so a hot-path call is one array copy and three writes
 * instead of marshalling every parameter by name. The template is checked against the script's manifest
 * when it is built; a script that does not take one key (and optionally its block key, derived from it:
 * `Slots.blockKeyOf`), both `now` and the amount, and one value per ARGV name has no template.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { BackendError } from "../Errors.js"
import type { EvalArgs } from "./ScriptRunner.js"
import { marshal, type Named, type Script } from "./Scripts.js"
import { blockKeyOf } from "./Slots.js"

/**
 * The EVALSHA arguments (after the SHA-1) of one script for one policy's fixed parameters.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallTemplate {
  readonly script: Script
  /**
   * numkeys, the key (and its block key, when the script reads blocks), then ARGV in manifest order with
   * `now` and the amount (`cost`) filled in.
   */
  readonly args: (key: string, now: number, cost: number) => EvalArgs
}

/** The KEYS name of a script's block key (the state key's admin block, `Slots.blockKeyOf`). */
const BLOCK = "block"

/**
 * Builds the template of `script` for the fixed parameters `params`, or `undefined` when the script's
 * shape does not fit (callers then marshal by name). Fails like `marshal` when a parameter is missing.
 * `amount` names the ARGV the call's amount goes to (default `cost`; the reserve scripts take `wants`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  script: Script,
  params: Named,
  amount: string = "cost"
): Effect.Effect<CallTemplate | undefined, BackendError> => {
  const nowAt = script.argv.indexOf("now")
  const costAt = script.argv.indexOf(amount)
  const blocks = script.keys.length === 2 && script.keys[1] === BLOCK
  const fits = (script.keys.length === 1 || blocks) && nowAt >= 0 && costAt >= 0 &&
    !script.argv.some((name) => name.endsWith("..."))
  if (!fits) return Effect.succeed(undefined)
  return Effect.map(marshal(script, "argv", { ...params, now: 0, [amount]: 1 }), (argv): CallTemplate => {
    // [numkeys, key, (block key,) ...argv]: the ARGV positions shift by numkeys + 1.
    const numkeys = script.keys.length
    const base: EvalArgs = blocks ? [2, "", "", ...argv] : [1, "", ...argv]
    const nowSlot = nowAt + numkeys + 1
    const costSlot = costAt + numkeys + 1
    return {
      script,
      args: blocks
        ? (key, now, cost) => {
          const args: EvalArgs = [...base]
          args[1] = key
          args[2] = blockKeyOf(key)
          args[nowSlot] = String(now)
          args[costSlot] = String(cost)
          return args
        }
        : (key, now, cost) => {
          const args: EvalArgs = [...base]
          args[1] = key
          args[nowSlot] = String(now)
          args[costSlot] = String(cost)
          return args
        }
    }
  })
}
