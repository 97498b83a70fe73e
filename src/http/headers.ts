/**
 * Rate-limit response headers, computed from a `Decision`: the IETF draft pair (`RateLimit-Policy` and
 * `RateLimit`) or the legacy `X-RateLimit-*` trio, plus `Retry-After` on a denial.
 *
 * @since 0.1.0
 */
import type { Decision } from "../Decision.js"
import { horizonMs, type Policy } from "../Policy.js"

/**
 * Which rate-limit headers to send: the IETF draft (`"ietf"`, the default), the legacy `X-RateLimit-*`
 * headers (`"legacy"`), or none (`"none"`; `Retry-After` is still sent on a denial).
 *
 * @since 0.1.0
 * @category models
 */
export type HeaderStyle = "ietf" | "legacy" | "none"

/**
 * What the headers describe besides the decision: the policy's name and, when known, its window in
 * whole seconds (the `w` parameter of `RateLimit-Policy`).
 *
 * @since 0.1.0
 * @category models
 */
export interface HeaderContext {
  readonly style: HeaderStyle
  readonly policy: string
  readonly windowSeconds?: number | undefined
  /** The current time in epoch-ms, to turn `resetAt` into a delay. */
  readonly now: number
}

/** Milliseconds to whole seconds, rounded up, never negative. */
const ceilSeconds = (ms: number): number => Math.max(0, Math.ceil(ms / 1000))

/**
 * The `Retry-After` value of a denial: `retryAfterMs` in seconds, rounded up, and at least 1 (a denial
 * always asks the client to wait).
 *
 * @since 0.1.0
 * @category headers
 */
export const retryAfterSeconds = (decision: Decision): number => Math.max(1, ceilSeconds(decision.retryAfterMs))

/**
 * Quotes a policy name as a structured-field string (RFC 8941 §3.3.3): backslash and double quote are
 * escaped, and characters outside printable ASCII are replaced by `?`.
 */
const quoteName = (name: string): string => `"${name.replace(/[^\x20-\x7e]/g, "?").replace(/[\\"]/g, (c) => `\\${c}`)}"`

/**
 * The rate-limit headers of a decision in the chosen style, with `Retry-After` added on a denial.
 * IETF: `RateLimit-Policy: "<name>";q=<limit>;w=<window s>` and `RateLimit: "<name>";r=<remaining>;t=<reset s>`
 * (`t` is the delay until `resetAt`, in seconds rounded up; `w` is left out when the window is unknown).
 * Legacy: `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (the reset instant in
 * epoch seconds, rounded up, as GitHub and most legacy clients read it).
 *
 * @since 0.1.0
 * @category headers
 */
export const rateLimitHeaders = (decision: Decision, context: HeaderContext): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (context.style === "ietf") {
    const name = quoteName(context.policy)
    const window = context.windowSeconds === undefined ? "" : `;w=${context.windowSeconds}`
    headers["ratelimit-policy"] = `${name};q=${decision.limit}${window}`
    headers["ratelimit"] = `${name};r=${decision.remaining};t=${ceilSeconds(decision.resetAt - context.now)}`
  } else if (context.style === "legacy") {
    headers["x-ratelimit-limit"] = String(decision.limit)
    headers["x-ratelimit-remaining"] = String(decision.remaining)
    headers["x-ratelimit-reset"] = String(Math.ceil(decision.resetAt / 1000))
  }
  if (!decision.allowed) headers["retry-after"] = String(retryAfterSeconds(decision))
  return headers
}

/** The items of a structured-field list whose members start with a quoted name, minus those named `name`. */
const otherItems = (list: string | undefined, name: string): Array<string> =>
  list === undefined || list.trim() === ""
    ? []
    : list.split(/,\s*(?=")/).map((item) => item.trim()).filter((item) => item.split(";")[0] !== name)

/**
 * Merges the rate-limit headers of one decision into headers already on a response, so several limits on
 * one request (e.g. a global rate and a route's admission) all show:
 * - IETF: `RateLimit-Policy` and `RateLimit` are lists; the policy's item is added (or replaces the item of
 *   the same policy);
 * - legacy: the `X-RateLimit-*` trio of the more restrictive limit (fewer remaining) is kept;
 * - `Retry-After`: the longer wait wins.
 *
 * @since 0.1.0
 * @category headers
 */
export const mergeRateLimitHeaders = (
  existing: Readonly<Record<string, string | undefined>>,
  added: Readonly<Record<string, string>>
): Record<string, string> => {
  const merged: Record<string, string> = {}
  for (const header of ["ratelimit-policy", "ratelimit"]) {
    const item = added[header]
    if (item === undefined) continue
    const name = item.split(";")[0] ?? item
    merged[header] = [...otherItems(existing[header], name), item].join(", ")
  }
  const addedRemaining = added["x-ratelimit-remaining"]
  if (addedRemaining !== undefined) {
    const existingRemaining = existing["x-ratelimit-remaining"]
    if (existingRemaining === undefined || Number(addedRemaining) < Number(existingRemaining)) {
      for (const header of ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]) {
        const value = added[header]
        if (value !== undefined) merged[header] = value
      }
    }
  }
  const retryAfter = added["retry-after"]
  if (retryAfter !== undefined) {
    const existingRetry = Number(existing["retry-after"] ?? "0")
    merged["retry-after"] = String(Math.max(Number(retryAfter), Number.isFinite(existingRetry) ? existingRetry : 0))
  }
  return merged
}

/**
 * The window of a policy in whole seconds (at least 1), for `RateLimit-Policy`'s `w`: the window of a
 * windowed strategy or a meter, the time to refill the full burst or capacity of GCRA or a token bucket,
 * the rate axis of a unified admitter. `undefined` for a pure concurrency admitter, which has no window.
 *
 * @since 0.1.0
 * @category headers
 */
export const policyWindowSeconds = (policy: Policy): number | undefined => {
  switch (policy.kind) {
    case "limiter":
      return Math.max(1, Math.ceil(horizonMs(policy.strategy) / 1000))
    case "meter":
      return Math.max(1, Math.ceil(policy.windowMs / 1000))
    case "admitter":
      return policy.rate === undefined ? undefined : Math.max(1, Math.ceil(horizonMs(policy.rate) / 1000))
    case "fair":
      return Math.max(1, Math.ceil(policy.fairEscrow.windowMs / 1000))
  }
}
