/**
 * The header arithmetic, without a server: rounding, quoting, merging, and the window of each policy kind.
 */
import { describe, expect, it } from "@effect/vitest"
import { Decision } from "../../src/Decision.js"
import {
  mergeRateLimitHeaders,
  policyWindowSeconds,
  rateLimitHeaders,
  retryAfterSeconds
} from "../../src/http/headers.js"

const decision = (fields: Partial<ConstructorParameters<typeof Decision>[0]>) =>
  new Decision({ allowed: true, limit: 10, remaining: 4, resetAt: 1_000_000, retryAfterMs: 0, ...fields })

describe("headers", () => {
  it("Retry-After rounds up to whole seconds and is at least 1 on a denial", () => {
    expect(retryAfterSeconds(decision({ allowed: false, retryAfterMs: 1 }))).toBe(1)
    expect(retryAfterSeconds(decision({ allowed: false, retryAfterMs: 1000 }))).toBe(1)
    expect(retryAfterSeconds(decision({ allowed: false, retryAfterMs: 1001 }))).toBe(2)
    expect(retryAfterSeconds(decision({ allowed: false, retryAfterMs: 0 }))).toBe(1)
  })

  it("IETF: RateLimit-Policy and RateLimit, t is the delay to resetAt rounded up", () => {
    const headers = rateLimitHeaders(decision({}), { style: "ietf", policy: "api", windowSeconds: 60, now: 998_500 })
    expect(headers).toEqual({ "ratelimit-policy": "\"api\";q=10;w=60", "ratelimit": "\"api\";r=4;t=2" })
    const past = rateLimitHeaders(decision({}), { style: "ietf", policy: "api", now: 2_000_000 })
    expect(past["ratelimit"]).toBe("\"api\";r=4;t=0")
    expect(past["ratelimit-policy"]).toBe("\"api\";q=10")
  })

  it("IETF: a policy name is quoted as a structured-field string", () => {
    const headers = rateLimitHeaders(decision({}), { style: "ietf", policy: "a\"b\\c é", now: 0 })
    expect(headers["ratelimit-policy"]).toBe("\"a\\\"b\\\\c ?\";q=10")
  })

  it("legacy: the reset is epoch seconds rounded up; a denial adds Retry-After", () => {
    const headers = rateLimitHeaders(
      decision({ allowed: false, remaining: 0, resetAt: 1_700_000_000_001, retryAfterMs: 2500 }),
      {
        style: "legacy",
        policy: "api",
        now: 0
      }
    )
    expect(headers).toEqual({
      "x-ratelimit-limit": "10",
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": "1700000001",
      "retry-after": "3"
    })
  })

  it("none: only Retry-After, and only on a denial", () => {
    expect(rateLimitHeaders(decision({}), { style: "none", policy: "api", now: 0 })).toEqual({})
    expect(rateLimitHeaders(decision({ allowed: false, retryAfterMs: 10 }), { style: "none", policy: "api", now: 0 }))
      .toEqual({ "retry-after": "1" })
  })

  it("merging: IETF items accumulate (same policy replaced), legacy keeps the tighter, Retry-After the longer", () => {
    const merged = mergeRateLimitHeaders(
      { "ratelimit-policy": "\"a\";q=5, \"b\";q=1", "ratelimit": "\"a\";r=4;t=1, \"b\";r=0;t=9", "retry-after": "9" },
      { "ratelimit-policy": "\"b\";q=2", "ratelimit": "\"b\";r=1;t=3", "retry-after": "3" }
    )
    expect(merged).toEqual({
      "ratelimit-policy": "\"a\";q=5, \"b\";q=2",
      "ratelimit": "\"a\";r=4;t=1, \"b\";r=1;t=3",
      "retry-after": "9"
    })
    const tighter = { "x-ratelimit-limit": "5", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "100" }
    const looser = { "x-ratelimit-limit": "50", "x-ratelimit-remaining": "30", "x-ratelimit-reset": "200" }
    expect(mergeRateLimitHeaders(tighter, looser)).toEqual({})
    expect(mergeRateLimitHeaders(looser, tighter)).toEqual(tighter)
    expect(mergeRateLimitHeaders({}, looser)).toEqual(looser)
  })

  it("the window of each policy kind", () => {
    const base = { name: "p", prefix: "p", maxKeys: 10 }
    expect(
      policyWindowSeconds({ ...base, kind: "limiter", strategy: { kind: "fixedWindow", limit: 5, windowMs: 1500 } })
    )
      .toBe(2)
    expect(
      policyWindowSeconds({
        ...base,
        kind: "limiter",
        strategy: { kind: "gcra", limit: 10, periodMs: 60_000, burst: 5 }
      })
    ).toBe(30)
    expect(
      policyWindowSeconds({
        ...base,
        kind: "limiter",
        strategy: { kind: "tokenBucket", capacity: 10, refillPerSec: 4 }
      })
    ).toBe(3)
    expect(policyWindowSeconds({ ...base, kind: "meter", budget: 100, windowMs: 60_000, shared: false })).toBe(60)
    const concurrency = {
      algorithm: "fixed" as const,
      minLimit: 1,
      maxLimit: 1,
      initialLimit: 1,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 1.5,
      rttWindow: 10
    }
    expect(policyWindowSeconds({ ...base, kind: "admitter", concurrency })).toBeUndefined()
    expect(
      policyWindowSeconds({
        ...base,
        kind: "admitter",
        concurrency,
        rate: { kind: "slidingWindow", limit: 5, windowMs: 10_000, buckets: 10 }
      })
    ).toBe(10)
  })
})
