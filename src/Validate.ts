/**
 * Argument checks shared by every backend. They run before any state is touched, so a rejected call
 * changes nothing. Stricter than the reference server, which silently coerces bad costs to 1.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { InvalidArgument } from "./Errors.js"

/**
 * The longest key accepted, in UTF-8 bytes.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_KEY_BYTES = 4096

/**
 * The longest policy name, in UTF-8 bytes: a configured name must fit (a longer one is a `PolicyError`),
 * so a call naming a longer policy is refused as `InvalidArgument` without looking it up or repeating
 * the name back.
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_POLICY_BYTES = 256

/**
 * Why `name` cannot be a policy name, or `undefined` when its length is fine (whether it is configured
 * is another question). The reason never repeats the name.
 *
 * @since 0.2.0
 * @category validation
 */
export const policyNameProblem = (name: string): string | undefined => {
  if (name.length * 3 <= MAX_POLICY_BYTES) return undefined
  const bytes = Buffer.byteLength(name, "utf8")
  return bytes > MAX_POLICY_BYTES ? `must be at most ${MAX_POLICY_BYTES} UTF-8 bytes, got ${bytes}` : undefined
}

/**
 * The most keys one `checkMany` call may carry.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_BATCH_KEYS = 10_000

/**
 * Why `amount` is not a usable cost, or `undefined` when it is a whole number in [1, 2^53 − 1].
 *
 * @since 0.1.0
 * @category validation
 */
export const costProblem = (amount: number): string | undefined => {
  if (typeof amount !== "number" || Number.isNaN(amount)) return "must be a number, got NaN"
  if (!Number.isFinite(amount)) return `must be finite, got ${amount}`
  if (!Number.isInteger(amount)) return `must be a whole number, got ${amount}`
  if (amount < 1) return `must be at least 1, got ${amount}`
  if (amount > Number.MAX_SAFE_INTEGER) return `must be at most 2^53 - 1, got ${amount}`
  return undefined
}

/**
 * Why `key` is not a usable key, or `undefined` when it is.
 *
 * @since 0.1.0
 * @category validation
 */
export const keyProblem = (key: string): string | undefined => {
  if (typeof key !== "string") return "must be a string"
  if (key.length === 0) return "must not be empty"
  if (!key.isWellFormed()) return "must be valid Unicode (it contains a lone surrogate)"
  // A UTF-16 code unit takes at most 3 UTF-8 bytes, so short keys skip the byte count (a hot-path cost).
  if (
    key.length > MAX_KEY_BYTES || (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES)
  ) {
    return `must be at most ${MAX_KEY_BYTES} UTF-8 bytes`
  }
  return undefined
}

/**
 * Succeeds with `amount` when it is a usable cost; fails with `InvalidArgument` naming `argument` otherwise.
 *
 * @since 0.1.0
 * @category validation
 */
export const cost = (amount: number, argument = "cost"): Effect.Effect<number, InvalidArgument> => {
  const problem = costProblem(amount)
  return problem === undefined
    ? Effect.succeed(amount)
    : Effect.fail(new InvalidArgument({ argument, reason: problem }))
}
