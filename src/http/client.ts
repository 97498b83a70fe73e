/**
 * Outbound rate limits for `@effect/platform`'s `HttpClient`: a client middleware that checks a policy
 * of the `RateLimiter` before each request, and learns from the responses when a remote server asks it
 * to slow down.
 *
 * - **Before sending**, the request's key (default: the URL's `host`, port included) is checked against
 *   `policy` through the `RateLimiter` in context (the cost defaults to 1). A denial never reaches the
 *   network.
 * - **From the responses**, it learns pauses: a `429` or `503` with `Retry-After` (delay-seconds or an
 *   HTTP-date), the IETF `RateLimit` header (`"default";r=0;t=30`, and the older `remaining=0, reset=30`
 *   dictionary form), the separate `RateLimit-Remaining` / `RateLimit-Reset` pair and the legacy
 *   `X-RateLimit-Remaining` / `X-RateLimit-Reset` pair (a remaining of `0` pauses until the reset). Until
 *   a learned pause ends, requests for that key are answered as limited without being sent.
 * - **On a denial** (local or learned) it fails with `RateLimited`, or with `onLimited: "wait"` sleeps
 *   the advised delay (plus a little jitter, interruptibly) and tries again, for at most `maxWait`.
 *
 * The response that carried the signal is returned to the caller unchanged (a `429` stays a `429`):
 * a request is never retried by this middleware, since it cannot know it is safe to.
 *
 * @since 0.3.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import { decisionOf } from "../Decision.js"
import {
  InvalidArgument,
  type OperationNotSupported,
  type PolicyNotFound,
  RateLimited,
  type RateLimiterError
} from "../Errors.js"
import { setBounded } from "../internal/boundedMap.js"
import { RateLimiter } from "../services/RateLimiter.js"

// ---------------------------------------------------------------------------------------------------------
// Reading the response headers (pure functions of the values and `now`)
// ---------------------------------------------------------------------------------------------------------

/**
 * Response headers as the readers take them: lower-case names (as `HttpClientResponse.headers` has them).
 *
 * @since 0.3.0
 * @category models
 */
export type ResponseHeaders = Readonly<Record<string, string | undefined>>

/** A non-negative integer of at most 15 digits (an RFC 8941 sf-integer without its sign). */
const INTEGER = /^\d{1,15}$/

/** A non-negative decimal, as some servers send resets (`1700000000.5`). */
const DECIMAL = /^\d{1,15}(\.\d{1,9})?$/

/** The non-negative integer `value` holds, or undefined. */
const readCount = (value: string | undefined): number | undefined => {
  const text = value?.trim()
  return text !== undefined && INTEGER.test(text) ? Number(text) : undefined
}

/** RFC 9110 §5.6.7's IMF-fixdate and its obsolete RFC 850 form, both in GMT. */
const HTTP_DATE =
  /^(?:[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4}|[A-Z][a-z]+, \d{2}-[A-Z][a-z]{2}-\d{2}) \d{2}:\d{2}:\d{2} GMT$/

/** The obsolete asctime form, in GMT though it does not say so (`Date.parse` would read local time). */
const ASCTIME = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/

/**
 * The instant `Retry-After` names, in epoch ms, or `undefined` when it is absent or malformed. The value
 * is either delay-seconds (a non-negative integer, from `now`) or an HTTP-date in one of RFC 9110's three
 * forms (IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`, asctime
 * `Sun Nov  6 08:49:37 1994`), all in GMT.
 *
 * @since 0.3.0
 * @category headers
 */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  const text = value?.trim()
  if (text === undefined) return undefined
  if (INTEGER.test(text)) return now + Number(text) * 1000
  const at = HTTP_DATE.test(text) ? Date.parse(text) : ASCTIME.test(text) ? Date.parse(`${text} GMT`) : Number.NaN
  return Number.isFinite(at) ? at : undefined
}

/**
 * Below this a reset counts as seconds from now; at or above it, as an epoch instant: 10^9 seconds is
 * about 31.7 years (no server asks for that wait) and, as an epoch, September 2001 (no server
 * resets then).
 *
 * @since 0.3.0
 * @category headers
 */
export const EPOCH_SECONDS_FROM = 1e9

/**
 * At or above this a reset counts as epoch milliseconds (10^12 ms is September 2001, as seconds
 * 31 700 years away).
 *
 * @since 0.3.0
 * @category headers
 */
export const EPOCH_MILLIS_FROM = 1e12

/**
 * The instant a `X-RateLimit-Reset` / `RateLimit-Reset` value names, in epoch ms, or `undefined` when it
 * is malformed (not a non-negative decimal). Servers disagree on the unit, so the size decides: a value
 * under `EPOCH_SECONDS_FROM` (10^9) is delta-seconds from `now` (GitLab, the IETF drafts), one under
 * `EPOCH_MILLIS_FROM` (10^12) is epoch seconds (GitHub, Twitter), a larger one epoch milliseconds.
 *
 * @since 0.3.0
 * @category headers
 */
export const parseReset = (value: string | undefined, now: number): number | undefined => {
  const text = value?.trim()
  if (text === undefined || !DECIMAL.test(text)) return undefined
  const n = Number(text)
  if (n >= EPOCH_MILLIS_FROM) return Math.ceil(n)
  if (n >= EPOCH_SECONDS_FROM) return Math.ceil(n * 1000)
  return now + Math.ceil(n * 1000)
}

/**
 * Splits a structured-field text at `separator`, outside quoted strings (RFC 8941 §3.3.3: a backslash
 * escapes the next character inside quotes). Pieces are trimmed.
 */
const splitOutsideQuotes = (text: string, separator: string): Array<string> => {
  const pieces: Array<string> = []
  let quoted = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (quoted && char === "\\") i++
    else if (char === "\"") quoted = !quoted
    else if (!quoted && char === separator) {
      pieces.push(text.slice(start, i).trim())
      start = i + 1
    }
  }
  pieces.push(text.slice(start).trim())
  return pieces
}

/** The name of a structured-field item: a quoted string (unescaped) or a token; undefined if neither. */
const itemName = (bare: string): string | undefined => {
  const quoted = /^"((?:[^"\\]|\\.)*)"$/.exec(bare)
  if (quoted !== null) return (quoted[1] ?? "").replace(/\\(.)/g, "$1")
  return /^[A-Za-z*][\w:/.!#$%&'*+^`|~-]*$/.test(bare) ? bare : undefined
}

/** The parameters of an item (`;key=value` pieces), by lower-case key; a bare key is `?1`. */
const itemParams = (pieces: ReadonlyArray<string>): Map<string, string> => {
  const params = new Map<string, string>()
  for (const piece of pieces) {
    const eq = piece.indexOf("=")
    const key = (eq < 0 ? piece : piece.slice(0, eq)).trim().toLowerCase()
    if (key !== "" && !params.has(key)) params.set(key, eq < 0 ? "?1" : piece.slice(eq + 1).trim())
  }
  return params
}

/**
 * One item of a `RateLimit` header: the quota `name` (absent in the older dictionary form), the units
 * `remaining`, and `resetSeconds`, the seconds until the quota resets.
 *
 * @since 0.3.0
 * @category models
 */
export interface RateLimitItem {
  readonly name?: string | undefined
  readonly remaining: number
  readonly resetSeconds: number
  /** The quota, when the header states it (the dictionary form's `limit`). */
  readonly limit?: number | undefined
}

/**
 * The items of a `RateLimit` header, in both forms of draft-ietf-httpapi-ratelimit-headers:
 * - the structured list (draft 07 on): `"default";r=0;t=30, "daily";r=500;t=3600`, one item per quota,
 *   `r` the remaining units and `t` the seconds to the reset;
 * - the older dictionary (drafts 03–06): `limit=100, remaining=0, reset=30`, one item.
 *
 * A malformed item (a bad name, `r` or `t` missing, negative or not an integer) is left out, never an
 * error; a malformed header gives no items.
 *
 * @since 0.3.0
 * @category headers
 */
export const parseRateLimit = (value: string | undefined): ReadonlyArray<RateLimitItem> => {
  if (value === undefined || value.trim() === "") return []
  const members = splitOutsideQuotes(value, ",")
  if (members.every((member) => /^[a-z-]+\s*=\s*[^";]*$/i.test(member))) {
    const dict = itemParams(members)
    const remaining = readCount(dict.get("remaining"))
    const resetSeconds = readCount(dict.get("reset"))
    if (remaining === undefined || resetSeconds === undefined) return []
    return [{ remaining, resetSeconds, limit: readCount(dict.get("limit")) }]
  }
  const items: Array<RateLimitItem> = []
  for (const member of members) {
    const [bare = "", ...rest] = splitOutsideQuotes(member, ";")
    const name = itemName(bare)
    const params = itemParams(rest)
    const remaining = readCount(params.get("r"))
    const resetSeconds = readCount(params.get("t"))
    if (name !== undefined && remaining !== undefined && resetSeconds !== undefined) {
      items.push({ name, remaining, resetSeconds })
    }
  }
  return items
}

/**
 * One item of a `RateLimit-Policy` header: the quota's `name`, its `quota` (`q`) and, when stated, its
 * window in seconds (`w`).
 *
 * @since 0.3.0
 * @category models
 */
export interface RateLimitPolicyItem {
  readonly name: string
  readonly quota: number
  readonly windowSeconds?: number | undefined
}

/**
 * The items of a `RateLimit-Policy` header (`"default";q=100;w=60`). Malformed items are left out.
 *
 * @since 0.3.0
 * @category headers
 */
export const parseRateLimitPolicy = (value: string | undefined): ReadonlyArray<RateLimitPolicyItem> => {
  if (value === undefined || value.trim() === "") return []
  const items: Array<RateLimitPolicyItem> = []
  for (const member of splitOutsideQuotes(value, ",")) {
    const [bare = "", ...rest] = splitOutsideQuotes(member, ";")
    const name = itemName(bare)
    const params = itemParams(rest)
    const quota = readCount(params.get("q"))
    if (name !== undefined && quota !== undefined) {
      items.push({ name, quota, windowSeconds: readCount(params.get("w")) })
    }
  }
  return items
}

/**
 * A pause a response asked for: no request for its key before `until` (epoch ms). `limit` is the remote
 * quota when a header stated it (0 when unknown).
 *
 * @since 0.3.0
 * @category models
 */
export interface Pause {
  readonly until: number
  readonly limit: number
}

/**
 * The pause a response asks for, or `undefined`: the latest instant among
 * - `Retry-After`, on a `429` or a `503` (elsewhere it is about redirects or maintenance, not limits);
 * - each `RateLimit` item with no units remaining (`r=0`), `t` seconds from `now`;
 * - `RateLimit-Remaining: 0` with `RateLimit-Reset`, and `X-RateLimit-Remaining: 0` with
 *   `X-RateLimit-Reset` (the reset read by `parseReset`'s rule).
 *
 * Instants not after `now` ask for nothing. Malformed values are ignored.
 *
 * @since 0.3.0
 * @category headers
 */
export const pauseFrom = (status: number, headers: ResponseHeaders, now: number): Pause | undefined => {
  let until = now
  let limit = 0
  const consider = (at: number | undefined, quota: number | undefined) => {
    if (at === undefined || at < until) return
    // The quota of the latest signal, or of any signal as late when that one stated none.
    if (quota !== undefined && (at > until || limit === 0)) limit = quota
    until = at
  }
  const limitHeader = readCount(headers["x-ratelimit-limit"]) ?? readCount(headers["ratelimit-limit"])
  if (status === 429 || status === 503) consider(parseRetryAfter(headers["retry-after"], now), limitHeader)
  const policies = parseRateLimitPolicy(headers["ratelimit-policy"])
  for (const item of parseRateLimit(headers["ratelimit"])) {
    if (item.remaining !== 0) continue
    const quota = item.limit ?? policies.find((policy) => policy.name === item.name)?.quota ?? limitHeader
    consider(now + item.resetSeconds * 1000, quota)
  }
  if (readCount(headers["ratelimit-remaining"]) === 0) {
    consider(parseReset(headers["ratelimit-reset"], now), readCount(headers["ratelimit-limit"]))
  }
  if (readCount(headers["x-ratelimit-remaining"]) === 0) {
    consider(parseReset(headers["x-ratelimit-reset"], now), readCount(headers["x-ratelimit-limit"]))
  }
  return until > now ? { until, limit } : undefined
}

/**
 * What a server says is left of its quota: `remaining` units until `until` (epoch ms), of `limit` (0 when
 * unknown).
 *
 * @since 0.3.0
 * @category models
 */
export interface RemoteQuota {
  readonly remaining: number
  readonly until: number
  readonly limit: number
}

/**
 * The tightest quota a response states with units still remaining, or `undefined`: the `RateLimit` item,
 * `RateLimit-Remaining` / `RateLimit-Reset` pair or `X-RateLimit-*` pair with the fewest units left (an
 * exhausted quota is a pause: `pauseFrom`). Malformed values and resets not after `now` are ignored.
 *
 * @since 0.3.0
 * @category headers
 */
export const quotaFrom = (headers: ResponseHeaders, now: number): RemoteQuota | undefined => {
  let tightest: RemoteQuota | undefined
  const consider = (remaining: number | undefined, until: number | undefined, limit: number | undefined) => {
    if (remaining === undefined || remaining === 0 || until === undefined || until <= now) return
    if (tightest === undefined || remaining < tightest.remaining) tightest = { remaining, until, limit: limit ?? 0 }
  }
  const policies = parseRateLimitPolicy(headers["ratelimit-policy"])
  for (const item of parseRateLimit(headers["ratelimit"])) {
    const quota = item.limit ?? policies.find((policy) => policy.name === item.name)?.quota
    consider(item.remaining, now + item.resetSeconds * 1000, quota)
  }
  consider(
    readCount(headers["ratelimit-remaining"]),
    parseReset(headers["ratelimit-reset"], now),
    readCount(headers["ratelimit-limit"])
  )
  consider(
    readCount(headers["x-ratelimit-remaining"]),
    parseReset(headers["x-ratelimit-reset"], now),
    readCount(headers["x-ratelimit-limit"])
  )
  return tightest
}

// ---------------------------------------------------------------------------------------------------------
// The learned pauses
// ---------------------------------------------------------------------------------------------------------

/**
 * What one limiter learned, by key, at most `maxKeys` entries, each good until its `until` (an ended
 * entry is dropped when next read). Past `maxKeys` the entry written longest ago is forgotten: the next
 * request for its key is then sent, and the server's answer teaches it again.
 */
class LearnedTable<A extends { readonly until: number }> {
  private readonly entries = new Map<string, A>()
  constructor(private readonly maxKeys: number) {}

  get(key: string, now: number): A | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.until > now) return entry
    this.entries.delete(key)
    return undefined
  }

  set(key: string, entry: A): void {
    setBounded(this.entries, key, entry, this.maxKeys)
  }

  /** Replaces `key`'s entry if it is still `expected` (the same object). */
  swap(key: string, expected: A, entry: A): void {
    if (this.entries.get(key) === expected) this.entries.set(key, entry)
  }
}

// ---------------------------------------------------------------------------------------------------------
// The middleware
// ---------------------------------------------------------------------------------------------------------

/**
 * The `policy` a `RateLimited` names when the denial came from a pause a remote server asked for, not
 * from the local policy.
 *
 * @since 0.3.0
 * @category constants
 */
export const REMOTE_POLICY = "remote"

/**
 * Options of the outbound limiter.
 *
 * @since 0.3.0
 * @category models
 */
export interface ClientLimitOptions {
  /** The policy checked before each request (a rate `limiter` policy). */
  readonly policy: string
  /** The key of a request (default: its URL's `host`, port included; the whole URL if it has none). */
  readonly key?: ((request: HttpClientRequest.HttpClientRequest) => string) | undefined
  /** The cost of a request (default 1). */
  readonly cost?: ((request: HttpClientRequest.HttpClientRequest) => number) | undefined
  /** On a denial: fail with `RateLimited` (`"fail"`, the default) or wait and try again (`"wait"`). */
  readonly onLimited?: "fail" | "wait" | undefined
  /**
   * The longest a request waits in `"wait"` mode, in all (default 30 seconds). A denial whose advised
   * delay ends later fails with `RateLimited` at once, without waiting in vain.
   */
  readonly maxWait?: Duration.DurationInput | undefined
  /** The most random delay added to each wait, so waiters do not all wake together (default 100 ms). */
  readonly jitter?: Duration.DurationInput | undefined
  /** Learn pauses from responses (default true). */
  readonly learn?: boolean | undefined
  /** The longest pause a response can impose (default 1 hour): a longer one is cut to it. */
  readonly maxPause?: Duration.DurationInput | undefined
  /** The most keys with a learned pause (or quota) kept (default 10 000; past it, the oldest is forgotten). */
  readonly maxKeys?: number | undefined
  /**
   * Also spend the quota a server states (`RateLimit: "default";r=5;t=30`, `X-RateLimit-Remaining: 5`
   * with its reset) locally (default false): each request sent counts one unit against what the last
   * response said remained, and when none remain further requests are denied until its reset, before the
   * server has to refuse them (concurrent requests no longer overshoot the remote quota). A later
   * response's figures replace the count.
   */
  readonly adaptive?: boolean | undefined
}

/**
 * What a limited client adds to its errors: `RateLimited` on a denial (local or learned), and the
 * `RateLimiter`'s faults.
 *
 * @since 0.3.0
 * @category errors
 */
export type ClientLimitError = RateLimited | RateLimiterError

/**
 * A compiled outbound limiter: wraps any `HttpClient`. Every client it wraps shares its learned pauses.
 *
 * @since 0.3.0
 * @category models
 */
export interface ClientLimiter {
  <E, R>(client: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E | ClientLimitError, R>
}

/** The default key: the URL's host (with the port), or the URL itself when it has no host. */
const hostOf = (request: HttpClientRequest.HttpClientRequest): string =>
  URL.canParse(request.url) ? new URL(request.url).host || request.url : request.url

const invalid = (argument: string, reason: string) => new InvalidArgument({ argument, reason })

/** `input` as whole milliseconds, or the reason it is not a usable duration. */
const millisOf = (input: Duration.DurationInput, argument: string): Effect.Effect<number, InvalidArgument> => {
  const duration = Duration.decodeUnknown(input)
  if (duration._tag === "None" || !Duration.isFinite(duration.value)) {
    return Effect.fail(invalid(argument, "must be a finite duration"))
  }
  return Effect.succeed(Math.ceil(Duration.toMillis(duration.value)))
}

/**
 * Validates `options`, captures the `RateLimiter`, resolves the policy and returns the limiter, with a
 * fresh table of learned pauses of its own. Fails with `InvalidArgument` on bad options and with
 * `PolicyNotFound` / `OperationNotSupported` when the policy cannot serve `check`.
 *
 * @example
 * ```ts
 * import { FetchHttpClient, HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { MemoryBackend } from "throttlekit-effect"
 * import { HttpClientLimiter } from "throttlekit-effect/http"
 *
 * const program = Effect.gen(function*() {
 *   const limited = yield* HttpClientLimiter.make({ policy: "github", onLimited: "wait", maxWait: "10 seconds" })
 *   const client = limited(yield* HttpClient.HttpClient)
 *   // At most 10 requests a second per host; a 429's Retry-After pauses that host, then requests wait.
 *   return client
 * })
 *
 * const limits = MemoryBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "github",
 *     prefix: "gh",
 *     maxKeys: 100,
 *     strategy: { kind: "gcra", limit: 10, periodMs: 1000, burst: 10 }
 *   }]
 * })
 *
 * Effect.runPromise(program.pipe(Effect.provide(limits), Effect.provide(FetchHttpClient.layer)))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make: (
  options: ClientLimitOptions
) => Effect.Effect<ClientLimiter, InvalidArgument | PolicyNotFound | OperationNotSupported, RateLimiter> = Effect.fn(
  "HttpClientLimiter.make"
)(function*(options: ClientLimitOptions) {
  const limiter = yield* RateLimiter
  const onLimited = options.onLimited ?? "fail"
  if (onLimited !== "fail" && onLimited !== "wait") {
    return yield* Effect.fail(invalid("onLimited", "must be \"fail\" or \"wait\""))
  }
  const maxWaitMs = yield* millisOf(options.maxWait ?? "30 seconds", "maxWait")
  const jitterMs = yield* millisOf(options.jitter ?? "100 millis", "jitter")
  const maxPauseMs = yield* millisOf(options.maxPause ?? "1 hour", "maxPause")
  const maxKeys = options.maxKeys ?? 10_000
  if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
    return yield* Effect.fail(invalid("maxKeys", "must be a positive integer"))
  }
  yield* limiter.resolve(options.policy, "check")
  const { policy } = options
  const keyOf = options.key ?? hostOf
  const costOf = options.cost
  const learn = options.learn ?? true
  const adaptive = options.adaptive ?? false
  const pauses = new LearnedTable<Pause>(maxKeys)
  const quotas = new LearnedTable<RemoteQuota>(maxKeys)

  const remoteDenial = (key: string, until: number, limit: number, now: number) =>
    new RateLimited({ policy: REMOTE_POLICY, key, decision: decisionOf(false, limit, 0, until, until - now) })

  /**
   * The denial standing in the way of a request for `key` now, if any: a learned pause, then (adaptive)
   * an exhausted remote quota, then the local policy. The remote unit is taken before the local check
   * and given back if the local policy denies.
   */
  const denial = (key: string, cost: number | undefined, now: number): Effect.Effect<
    RateLimited | undefined,
    RateLimiterError
  > => {
    const pause = pauses.get(key, now)
    if (pause !== undefined) return Effect.succeed(remoteDenial(key, pause.until, pause.limit, now))
    const quota = adaptive ? quotas.get(key, now) : undefined
    if (quota !== undefined && quota.remaining <= 0) {
      return Effect.succeed(remoteDenial(key, quota.until, quota.limit, now))
    }
    const taken = quota === undefined ? undefined : { ...quota, remaining: quota.remaining - 1 }
    if (quota !== undefined && taken !== undefined) quotas.swap(key, quota, taken)
    return Effect.map(limiter.check(policy, key, cost), (decision) => {
      if (decision.allowed) return undefined
      if (quota !== undefined && taken !== undefined) quotas.swap(key, taken, quota)
      return new RateLimited({ policy, key, decision })
    })
  }

  /** Lets a request for `key` go, or fails with `RateLimited`, after waiting in `"wait"` mode. */
  const gate = Effect.fn("HttpClientLimiter.gate")(function*(key: string, cost: number | undefined) {
    const deadline = (yield* Clock.currentTimeMillis) + maxWaitMs
    for (;;) {
      const now = yield* Clock.currentTimeMillis
      const denied = yield* denial(key, cost, now)
      if (denied === undefined) return
      const advised = denied.decision.retryAfterMs
      if (onLimited === "fail" || now + advised > deadline) return yield* Effect.fail(denied)
      const jitter = jitterMs > 0 ? yield* Random.nextIntBetween(0, jitterMs + 1) : 0
      yield* Effect.sleep(Duration.millis(Math.max(1, Math.min(advised + jitter, deadline - now))))
    }
  })

  /** Records the pause (and, adaptive, the quota) `response` states for `key`, cut to `maxPause`. */
  const learnFrom = (key: string, response: HttpClientResponse.HttpClientResponse) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        const pause = pauseFrom(response.status, response.headers, now)
        // A pause only ever lengthens: a response that was in flight when it began does not end it.
        const current = pauses.get(key, now)
        if (pause !== undefined && (current === undefined || current.until < pause.until)) {
          pauses.set(key, { ...pause, until: Math.min(pause.until, now + maxPauseMs) })
        }
        const quota = adaptive && pause === undefined ? quotaFrom(response.headers, now) : undefined
        if (quota !== undefined) quotas.set(key, { ...quota, until: Math.min(quota.until, now + maxPauseMs) })
      }))

  const limited: ClientLimiter = <E, R>(client: HttpClient.HttpClient.With<E, R>) =>
    HttpClient.transform(client, (send, request) => {
      const key = keyOf(request)
      const gated = Effect.zipRight(gate(key, costOf?.(request)), send)
      return learn
        ? gated.pipe(
          Effect.tap((response) => learnFrom(key, response)),
          Effect.tapError((error) =>
            HttpClientError.isHttpClientError(error) && error._tag === "ResponseError"
              ? learnFrom(key, error.response)
              : Effect.void
          )
        )
        : gated
    })
  return limited
})

/**
 * The `HttpClient` in context, wrapped by a fresh limiter (`make(options)`).
 *
 * @since 0.3.0
 * @category constructors
 */
export const client = (
  options: ClientLimitOptions
): Effect.Effect<
  HttpClient.HttpClient.With<HttpClientError.HttpClientError | ClientLimitError>,
  InvalidArgument | PolicyNotFound | OperationNotSupported,
  RateLimiter | HttpClient.HttpClient
> => Effect.zipWith(make(options), HttpClient.HttpClient, (limited, inner) => limited(inner))
