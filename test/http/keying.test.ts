/**
 * Proxy trust and forwarded-header parsing, without a server (the loopback tests cover the wiring).
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { clientAddress, forwardedHops, normalizeAddress, TrustedProxies, UNKNOWN_PEER } from "../../src/http/keying.js"

/** A web `Request` seen by the platform, with a given peer address. */
const requestFrom = (peer: string | undefined, headers: Record<string, string> = {}) => {
  const request = HttpServerRequest.fromWeb(new Request("http://local/", { headers }))
  return peer === undefined ? request : request.modify({ remoteAddress: peer })
}

describe("keying", () => {
  it("normalizes IPv4-mapped IPv6 and zones", () => {
    expect(normalizeAddress("::ffff:192.0.2.1")).toBe("192.0.2.1")
    expect(normalizeAddress("::FFFF:10.0.0.1")).toBe("10.0.0.1")
    expect(normalizeAddress("fe80::1%eth0")).toBe("fe80::1")
    expect(normalizeAddress("2001:db8::1")).toBe("2001:db8::1")
  })

  it.effect("trusted proxies: addresses, CIDRs (v4, v6, mapped), aliases", () =>
    Effect.gen(function*() {
      const trusted = yield* TrustedProxies.make(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "loopback"])
      expect(trusted.contains("10.200.3.4")).toBe(true)
      expect(trusted.contains("::ffff:10.1.1.1")).toBe(true)
      expect(trusted.contains("11.0.0.1")).toBe(false)
      expect(trusted.contains("192.0.2.7")).toBe(true)
      expect(trusted.contains("192.0.2.8")).toBe(false)
      expect(trusted.contains("2001:db8:ffff::1")).toBe(true)
      expect(trusted.contains("2001:db9::1")).toBe(false)
      expect(trusted.contains("127.0.0.9")).toBe(true)
      expect(trusted.contains("::1")).toBe(true)
      expect(trusted.contains("unknown")).toBe(false)
      const priv = yield* TrustedProxies.make(["private"])
      expect(priv.contains("172.20.0.1")).toBe(true)
      expect(priv.contains("fd00::1")).toBe(true)
      expect(priv.contains("8.8.8.8")).toBe(false)
    }))

  it.effect("bad trusted-proxy entries fail with InvalidArgument naming the entry", () =>
    Effect.gen(function*() {
      for (const bad of ["10.0.0.0/33", "::/129", "10.0.0.0/x", "example.com", "", "10.0.0.0/"]) {
        const error = yield* Effect.flip(TrustedProxies.make(["loopback", bad]))
        expect(error._tag).toBe("InvalidArgument")
        expect(error.message).toContain(JSON.stringify(bad))
      }
    }))

  it("parses X-Forwarded-For and Forwarded hops, ports and brackets stripped", () => {
    expect(forwardedHops("x-forwarded-for", " 203.0.113.1 , 10.0.0.1:8080,[2001:db8::1]:443, ::ffff:1.2.3.4"))
      .toEqual(["203.0.113.1", "10.0.0.1", "2001:db8::1", "1.2.3.4"])
    expect(
      forwardedHops(
        "forwarded",
        "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\", proto=https"
      )
    ).toEqual(["192.0.2.60", "2001:db8:cafe::17", "unknown"])
    expect(forwardedHops("forwarded", "for=\"_hidden, still hidden\";by=x, for=unknown")).toEqual([
      "_hidden, still hidden",
      "unknown"
    ])
  })

  it.effect("the client address: peer unless trusted, then the right-most untrusted hop", () =>
    Effect.gen(function*() {
      const trusted = yield* TrustedProxies.make(["10.0.0.0/8"])
      const xff = (peer: string | undefined, value?: string) =>
        clientAddress(
          requestFrom(peer, value === undefined ? {} : { "x-forwarded-for": value }),
          trusted,
          "x-forwarded-for"
        )
      expect(xff("198.51.100.1", "1.1.1.1")).toBe("198.51.100.1")
      expect(xff("10.0.0.1", "1.1.1.1")).toBe("1.1.1.1")
      expect(xff("10.0.0.1", "6.6.6.6, 1.1.1.1, 10.0.0.2")).toBe("1.1.1.1")
      expect(xff("10.0.0.1", "10.0.0.3, 10.0.0.2")).toBe("10.0.0.3")
      expect(xff("10.0.0.1", "garbage, 1.1.1.1")).toBe("1.1.1.1")
      expect(xff("10.0.0.1", "1.1.1.1, unknown")).toBe("unknown")
      expect(xff("10.0.0.1")).toBe("10.0.0.1")
      expect(xff("::ffff:10.0.0.1", "1.1.1.1")).toBe("1.1.1.1")
      expect(xff(undefined, "1.1.1.1")).toBe(UNKNOWN_PEER)
      // Trust nothing: headers are never read.
      const noTrust = clientAddress(
        requestFrom("10.0.0.1", { "x-forwarded-for": "1.1.1.1" }),
        TrustedProxies.none,
        "x-forwarded-for"
      )
      expect(noTrust).toBe("10.0.0.1")
      // Only the declared header is read.
      const other = clientAddress(requestFrom("10.0.0.1", { "x-forwarded-for": "1.1.1.1" }), trusted, "forwarded")
      expect(other).toBe("10.0.0.1")
    }))
})
