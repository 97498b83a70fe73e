/**
 * The outbound limiter's header readers: every form of `Retry-After`, `RateLimit` / `RateLimit-Policy`,
 * `RateLimit-Remaining` / `RateLimit-Reset` and `X-RateLimit-*`, and malformed values (ignored, never a
 * crash).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  parseRateLimit,
  parseRateLimitPolicy,
  parseReset,
  parseRetryAfter,
  pauseFrom,
  quotaFrom
} from "../../src/http/client.js"

const NOW = 1_700_000_000_000

describe("parseRetryAfter", () => {
  it("reads delay-seconds from now", () => {
    expect(parseRetryAfter("120", NOW)).toBe(NOW + 120_000)
    expect(parseRetryAfter(" 1 ", NOW)).toBe(NOW + 1000)
    expect(parseRetryAfter("0", NOW)).toBe(NOW)
  })

  it("reads the three HTTP-date forms, all in GMT", () => {
    const at = Date.UTC(1994, 10, 6, 8, 49, 37)
    expect(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", NOW)).toBe(at)
    expect(parseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", NOW)).toBe(at)
    expect(parseRetryAfter("Sun Nov  6 08:49:37 1994", NOW)).toBe(at)
  })

  it("ignores what is absent or malformed", () => {
    for (
      const value of [
        undefined,
        "",
        "   ",
        "-5",
        "1.5",
        "1e3",
        "soon",
        "12abc",
        "Mon, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:00 PST",
        "2015-10-21T07:28:00Z",
        "9".repeat(40)
      ]
    ) {
      expect(parseRetryAfter(value, NOW)).toBeUndefined()
    }
  })
})

describe("parseReset", () => {
  it("reads delta-seconds below 10^9, epoch seconds below 10^12, epoch milliseconds above", () => {
    expect(parseReset("30", NOW)).toBe(NOW + 30_000)
    expect(parseReset("1.5", NOW)).toBe(NOW + 1500)
    expect(parseReset("999999999", NOW)).toBe(NOW + 999_999_999_000)
    expect(parseReset("1700000060", NOW)).toBe(1_700_000_060_000)
    expect(parseReset("1700000060.25", NOW)).toBe(1_700_000_060_250)
    expect(parseReset("1700000060123", NOW)).toBe(1_700_000_060_123)
  })

  it("ignores malformed values", () => {
    for (const value of [undefined, "", "-1", "abc", "1e9", "0x10", "1.", "Infinity", "NaN", "1,2"]) {
      expect(parseReset(value, NOW)).toBeUndefined()
    }
  })
})

describe("parseRateLimit", () => {
  it("reads the structured list: one item per quota, quoted or token names", () => {
    expect(parseRateLimit("\"default\";r=0;t=30")).toEqual([{ name: "default", remaining: 0, resetSeconds: 30 }])
    expect(parseRateLimit("\"burst\";r=5;t=1, daily;r=0;t=3600;pk=:abc=:")).toEqual([
      { name: "burst", remaining: 5, resetSeconds: 1 },
      { name: "daily", remaining: 0, resetSeconds: 3600 }
    ])
    // A comma and a semicolon inside a quoted name do not split it; escapes are undone.
    expect(parseRateLimit("\"a,b;c\\\"d\";r=1;t=2")).toEqual([{ name: "a,b;c\"d", remaining: 1, resetSeconds: 2 }])
  })

  it("reads the older dictionary form", () => {
    expect(parseRateLimit("limit=100, remaining=0, reset=30")).toEqual([
      { remaining: 0, resetSeconds: 30, limit: 100 }
    ])
    expect(parseRateLimit("remaining=3, reset=1")).toEqual([{ remaining: 3, resetSeconds: 1, limit: undefined }])
  })

  it("leaves out malformed items and ignores malformed headers", () => {
    expect(parseRateLimit("\"x\";r=-1;t=5, \"y\";r=0;t=5")).toEqual([{ name: "y", remaining: 0, resetSeconds: 5 }])
    for (
      const value of [
        undefined,
        "",
        "\"x\";r=1.5;t=5",
        "\"x\";t=5",
        "\"x\";r=0",
        "\"x\";r=0;t=soon",
        "r=0;t=5",
        "1x;r=0;t=5",
        "\"unterminated;r=0;t=5",
        ";;;,,,\"",
        "limit=100, remaining=zero, reset=30",
        "limit=100, reset=30",
        "\"x\";r=0;t=9999999999999999"
      ]
    ) {
      expect(parseRateLimit(value)).toEqual([])
    }
  })
})

describe("parseRateLimitPolicy", () => {
  it("reads quotas and windows; leaves out malformed items", () => {
    expect(parseRateLimitPolicy("\"default\";q=100;w=60, \"daily\";q=5000")).toEqual([
      { name: "default", quota: 100, windowSeconds: 60 },
      { name: "daily", quota: 5000, windowSeconds: undefined }
    ])
    expect(parseRateLimitPolicy("\"x\";q=-1, \"y\";w=60, \"z\";q=1;w=x")).toEqual([
      { name: "z", quota: 1, windowSeconds: undefined }
    ])
    expect(parseRateLimitPolicy(undefined)).toEqual([])
    expect(parseRateLimitPolicy("\"")).toEqual([])
  })
})

describe("pauseFrom", () => {
  it("Retry-After pauses on 429 and 503 only", () => {
    expect(pauseFrom(429, { "retry-after": "2" }, NOW)).toEqual({ until: NOW + 2000, limit: 0 })
    expect(pauseFrom(503, { "retry-after": "Tue, 14 Nov 2023 22:13:25 GMT" }, NOW)).toEqual({
      until: Date.UTC(2023, 10, 14, 22, 13, 25),
      limit: 0
    })
    expect(pauseFrom(200, { "retry-after": "2" }, NOW)).toBeUndefined()
    expect(pauseFrom(301, { "retry-after": "2" }, NOW)).toBeUndefined()
  })

  it("an exhausted RateLimit item pauses on any status, with its quota from RateLimit-Policy", () => {
    const headers = {
      "ratelimit": "\"burst\";r=4;t=1, \"daily\";r=0;t=60",
      "ratelimit-policy": "\"burst\";q=5;w=1, \"daily\";q=1000;w=86400"
    }
    expect(pauseFrom(200, headers, NOW)).toEqual({ until: NOW + 60_000, limit: 1000 })
    expect(pauseFrom(200, { "ratelimit": "\"burst\";r=4;t=1" }, NOW)).toBeUndefined()
    expect(pauseFrom(200, { "ratelimit": "limit=10, remaining=0, reset=5" }, NOW)).toEqual({
      until: NOW + 5000,
      limit: 10
    })
  })

  it("RateLimit-Remaining / RateLimit-Reset and X-RateLimit-* pause when nothing remains", () => {
    expect(pauseFrom(200, { "ratelimit-remaining": "0", "ratelimit-reset": "3", "ratelimit-limit": "9" }, NOW))
      .toEqual({ until: NOW + 3000, limit: 9 })
    expect(pauseFrom(200, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000010" }, NOW)).toEqual({
      until: 1_700_000_010_000,
      limit: 0
    })
    expect(pauseFrom(200, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "10", "x-ratelimit-limit": "60" }, NOW))
      .toEqual({ until: NOW + 10_000, limit: 60 })
    expect(pauseFrom(200, { "x-ratelimit-remaining": "1", "x-ratelimit-reset": "10" }, NOW)).toBeUndefined()
  })

  it("the latest instant wins; a 429's limit comes from X-RateLimit-Limit", () => {
    const headers = {
      "retry-after": "1",
      "ratelimit": "\"default\";r=0;t=5",
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": "3",
      "x-ratelimit-limit": "50"
    }
    expect(pauseFrom(429, headers, NOW)).toEqual({ until: NOW + 5000, limit: 50 })
  })

  it("resets in the past, zero delays and malformed values ask for nothing", () => {
    expect(pauseFrom(429, { "retry-after": "0" }, NOW)).toBeUndefined()
    expect(pauseFrom(429, { "retry-after": "Sun, 06 Nov 1994 08:49:37 GMT" }, NOW)).toBeUndefined()
    expect(pauseFrom(200, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1600000000" }, NOW)).toBeUndefined()
    expect(
      pauseFrom(429, {
        "retry-after": "later",
        "ratelimit": "\"x\";r=zero;t=5",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "-4",
        "x-ratelimit-remaining": "none",
        "x-ratelimit-reset": "5"
      }, NOW)
    ).toBeUndefined()
    expect(pauseFrom(429, {}, NOW)).toBeUndefined()
  })
})

describe("quotaFrom", () => {
  it("the tightest stated quota with units left", () => {
    const headers = {
      "ratelimit": "\"burst\";r=4;t=1, \"daily\";r=900;t=60",
      "ratelimit-policy": "\"burst\";q=5;w=1",
      "x-ratelimit-remaining": "7",
      "x-ratelimit-reset": "1700000010",
      "x-ratelimit-limit": "10"
    }
    expect(quotaFrom(headers, NOW)).toEqual({ remaining: 4, until: NOW + 1000, limit: 5 })
    expect(quotaFrom({ "x-ratelimit-remaining": "7", "x-ratelimit-reset": "1700000010" }, NOW)).toEqual({
      remaining: 7,
      until: 1_700_000_010_000,
      limit: 0
    })
    expect(quotaFrom({ "ratelimit-remaining": "2", "ratelimit-reset": "5", "ratelimit-limit": "3" }, NOW)).toEqual({
      remaining: 2,
      until: NOW + 5000,
      limit: 3
    })
  })

  it("exhausted, expired and malformed quotas state nothing", () => {
    expect(quotaFrom({ "ratelimit": "\"x\";r=0;t=5" }, NOW)).toBeUndefined()
    expect(quotaFrom({ "ratelimit": "\"x\";r=3;t=0" }, NOW)).toBeUndefined()
    expect(quotaFrom({ "x-ratelimit-remaining": "5", "x-ratelimit-reset": "1600000000" }, NOW)).toBeUndefined()
    expect(quotaFrom({ "x-ratelimit-remaining": "five", "x-ratelimit-reset": "5" }, NOW)).toBeUndefined()
    expect(quotaFrom({ "x-ratelimit-remaining": "5" }, NOW)).toBeUndefined()
    expect(quotaFrom({}, NOW)).toBeUndefined()
  })
})
