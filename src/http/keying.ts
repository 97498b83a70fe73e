/**
 * Who a request counts against. By default the connecting peer's address; forwarded headers only when
 * the peer is a proxy the app declared trusted, taking the right-most hop that is not trusted (the one a
 * trusted proxy saw connect, which a client cannot forge); or any function of the request.
 *
 * @since 0.1.0
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { BlockList, isIP } from "node:net"
import { InvalidArgument } from "../Errors.js"

/**
 * A key function: the identity a request is limited under (an API key, a user id, a tenant). It gets the
 * request and its client address (already resolved under the proxy trust rules), to fall back on.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyFunction<E = never, R = never> = (
  request: HttpServerRequest.HttpServerRequest,
  clientAddress: string
) => Effect.Effect<string, E, R>

/**
 * The forwarding header the app's proxies write. Only that one is read: honouring a header the proxy
 * does not rewrite would let a client choose its own key.
 *
 * @since 0.1.0
 * @category models
 */
export type ForwardedHeader = "x-forwarded-for" | "forwarded"

/**
 * The key used when a request has no peer address at all (a Unix socket, a test request).
 *
 * @since 0.1.0
 * @category constants
 */
export const UNKNOWN_PEER = "unknown-peer"

/** Named groups of addresses accepted in a trusted-proxy list. */
const aliases: Record<string, ReadonlyArray<string>> = {
  loopback: ["127.0.0.0/8", "::1/128"],
  private: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
}

/**
 * An address without an IPv6 zone and, for an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`), as plain
 * IPv4, so that one client gets one key however the socket reports it.
 *
 * @since 0.1.0
 * @category keying
 */
export const normalizeAddress = (address: string): string => {
  const zone = address.indexOf("%")
  const bare = zone === -1 ? address : address.slice(0, zone)
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare)
  return mapped !== null && mapped[1] !== undefined ? mapped[1] : bare
}

/**
 * A set of trusted proxy addresses and CIDR ranges (IPv4 and IPv6). Build it with `TrustedProxies.make`.
 *
 * @since 0.1.0
 * @category models
 */
export class TrustedProxies {
  private constructor(private readonly list: BlockList, readonly entries: ReadonlyArray<string>) {}

  /**
   * Whether `address` (any textual IP) is inside one of the trusted ranges.
   *
   * @since 0.1.0
   */
  contains(address: string): boolean {
    const normalized = normalizeAddress(address)
    const family = isIP(normalized)
    if (family === 0) return false
    return this.list.check(normalized, family === 4 ? "ipv4" : "ipv6")
  }

  /** True when no proxy is trusted (forwarded headers are then never read). */
  get isEmpty(): boolean {
    return this.entries.length === 0
  }

  /**
   * Parses a list of addresses (`"10.0.0.7"`, `"::1"`), CIDR ranges (`"10.0.0.0/8"`, `"fd00::/8"`) and the
   * aliases `"loopback"` and `"private"`. Any other entry fails with `InvalidArgument` naming it.
   *
   * @since 0.1.0
   */
  static make(entries: ReadonlyArray<string>): Effect.Effect<TrustedProxies, InvalidArgument> {
    return Effect.suspend(() => {
      const list = new BlockList()
      for (const entry of entries) {
        const expanded = aliases[entry.trim().toLowerCase()] ?? [entry.trim()]
        for (const range of expanded) {
          const problem = addRange(list, range)
          if (problem !== undefined) {
            return Effect.fail(
              new InvalidArgument({ argument: "trustedProxies", reason: `${JSON.stringify(entry)}: ${problem}` })
            )
          }
        }
      }
      return Effect.succeed(new TrustedProxies(list, entries))
    })
  }

  /** The empty set: trust no proxy. */
  static readonly none: TrustedProxies = new TrustedProxies(new BlockList(), [])
}

/** Adds one address or CIDR range to `list`, or says what is wrong with it. */
const addRange = (list: BlockList, range: string): string | undefined => {
  const slash = range.indexOf("/")
  const address = normalizeAddress(slash === -1 ? range : range.slice(0, slash))
  const family = isIP(address)
  if (family === 0) return "not an IP address or CIDR range"
  const type = family === 4 ? "ipv4" : "ipv6"
  if (slash === -1) {
    list.addAddress(address, type)
    return undefined
  }
  const prefixText = range.slice(slash + 1)
  const prefix = Number(prefixText)
  const maxPrefix = family === 4 ? 32 : 128
  if (!/^\d{1,3}$/.test(prefixText) || prefix > maxPrefix) {
    return `prefix length must be a whole number from 0 to ${maxPrefix}`
  }
  list.addSubnet(address, prefix, type)
  return undefined
}

/**
 * Strips the port and brackets from one forwarded hop: `[2001:db8::1]:4711` → `2001:db8::1`,
 * `192.0.2.1:8080` → `192.0.2.1`. Anything else (an IP, `unknown`, an obfuscated `_id`) is kept as written.
 */
const hopAddress = (hop: string): string => {
  const trimmed = hop.trim()
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(trimmed)
  if (bracketed !== null && bracketed[1] !== undefined) return normalizeAddress(bracketed[1])
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(trimmed)
  if (withPort !== null && withPort[1] !== undefined) return withPort[1]
  return normalizeAddress(trimmed)
}

/** Splits on `separator` outside double-quoted strings. */
const splitOutsideQuotes = (text: string, separator: string): Array<string> => {
  const parts: Array<string> = []
  let current = ""
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === "\\" && quoted && i + 1 < text.length) {
      current += c + text[i + 1]
      i++
      continue
    }
    if (c === "\"") quoted = !quoted
    if (c === separator && !quoted) {
      parts.push(current)
      current = ""
    } else {
      current += c
    }
  }
  parts.push(current)
  return parts
}

/** Removes the quotes (and escapes) of an RFC 7230 quoted-string; a token is returned as is. */
const unquote = (value: string): string => {
  const v = value.trim()
  if (v.length >= 2 && v.startsWith("\"") && v.endsWith("\"")) return v.slice(1, -1).replace(/\\(.)/g, "$1")
  return v
}

/**
 * The hops of a forwarding header, left (the claimed origin) to right (the last proxy's peer).
 * `X-Forwarded-For: a, b` gives `[a, b]`; `Forwarded: for=a;proto=https, for="[b]:1"` gives `[a, b]`
 * (an element without `for` gives `unknown`).
 *
 * @since 0.1.0
 * @category keying
 */
export const forwardedHops = (header: ForwardedHeader, value: string): ReadonlyArray<string> => {
  if (header === "x-forwarded-for") {
    return value.split(",").map(hopAddress).filter((hop) => hop !== "")
  }
  return splitOutsideQuotes(value, ",").filter((element) => element.trim() !== "").map((element) => {
    for (const pair of splitOutsideQuotes(element, ";")) {
      const eq = pair.indexOf("=")
      if (eq !== -1 && pair.slice(0, eq).trim().toLowerCase() === "for") {
        return hopAddress(unquote(pair.slice(eq + 1)))
      }
    }
    return "unknown"
  })
}

/**
 * The client address of a request. The peer address, unless the peer is a trusted proxy: then the
 * right-most hop of `header` that is not itself trusted (or the left-most hop when every hop is trusted,
 * or the peer when the header is absent). A hop that is not an IP address stops the walk and is the answer.
 *
 * @since 0.1.0
 * @category keying
 */
export const clientAddress = (
  request: HttpServerRequest.HttpServerRequest,
  trusted: TrustedProxies,
  header: ForwardedHeader
): string => {
  const peer = Option.map(request.remoteAddress, normalizeAddress)
  if (Option.isNone(peer)) return UNKNOWN_PEER
  if (trusted.isEmpty || !trusted.contains(peer.value)) return peer.value
  const value = request.headers[header]
  if (value === undefined || value.trim() === "") return peer.value
  const hops = forwardedHops(header, value)
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!
    if (isIP(hop) === 0 || !trusted.contains(hop)) return hop
  }
  return hops[0] ?? peer.value
}

/**
 * The default key function: the client address itself.
 *
 * @since 0.1.0
 * @category keying
 */
export const byClientAddress: KeyFunction = (_request, address) => Effect.succeed(address)

/**
 * A key function reading a request header (e.g. `x-api-key`): the key is `<name>:<value>`, so a header
 * value can never collide with an address key. Falls back to the client address when the header is
 * missing or empty.
 *
 * @since 0.1.0
 * @category keying
 */
export const byHeader = (name: string): KeyFunction => (request, address) => {
  const header = name.toLowerCase()
  const value = request.headers[header]
  return Effect.succeed(value === undefined || value.trim() === "" ? address : `${header}:${value.trim()}`)
}
