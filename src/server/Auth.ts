/**
 * Who may call the Monitor, Fleet and Admin doors (CONTRACT.md §2, auth posture; the Admin door is this
 * package's own): without a secret, loopback peers only; with a secret, every caller (loopback included)
 * must present it, as call metadata `x-monitor-secret` / `x-fleet-secret` / `x-admin-secret` or as
 * `authorization: Bearer <secret>` (the word `Bearer` in any case). The comparison runs in constant time
 * over SHA-256 digests (equal lengths whatever was sent), and neither the secret nor what was presented is
 * ever logged or echoed. A refusal is UNAUTHENTICATED and comes before anything else, so an unauthorised
 * caller learns nothing about the policies.
 *
 * @since 0.1.0
 */
import { status as Status } from "@grpc/grpc-js"
import type * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { isIP } from "node:net"
import { type GrpcStatusError, statusError } from "../grpc/status.js"

/**
 * How a door authenticates: its metadata header and the optional secret.
 *
 * @since 0.1.0
 * @category models
 */
export interface DoorAuth {
  /** The door's name in refusals ("Monitor", "Fleet"). */
  readonly door: string
  /** The metadata key carrying the secret, lowercase ("x-monitor-secret", "x-fleet-secret"). */
  readonly header: string
  /** The secret every caller must present; none means loopback peers only. */
  readonly secret: Option.Option<Redacted.Redacted<string>>
}

const isLoopbackHost = (host: string): boolean => {
  const lower = host.toLowerCase()
  if (lower === "localhost") return true
  const family = isIP(lower)
  if (family === 4) return lower.startsWith("127.")
  if (family === 6) {
    if (lower === "::1" || lower === "0:0:0:0:0:0:0:1") return true
    const mapped = /^(?:0:0:0:0:0:|::)ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
    return mapped !== null && isIP(mapped[1]!) === 4 && mapped[1]!.startsWith("127.")
  }
  return false
}

/**
 * True when a grpc-js peer string names a loopback peer: `unix:…`, an address in 127/8, `::1`,
 * `::ffff:127.x.x.x` or `localhost`, with or without an `ipv4:`/`ipv6:` prefix, brackets and a port.
 *
 * @since 0.1.0
 * @category auth
 */
export const isLoopbackPeer = (peer: string): boolean => {
  let rest = peer.trim()
  if (rest.startsWith("unix:")) return true
  if (rest.startsWith("ipv4:") || rest.startsWith("ipv6:")) rest = rest.slice(5)
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]")
    return close > 0 && isLoopbackHost(rest.slice(1, close))
  }
  if (isLoopbackHost(rest)) return true
  // host:port (IPv4 or a name), or a bare IPv6 address followed by :port.
  const colon = rest.lastIndexOf(":")
  return colon > 0 && /^\d+$/.test(rest.slice(colon + 1)) && isLoopbackHost(rest.slice(0, colon))
}

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/**
 * True when `presented` equals the secret, in time independent of where they differ (the comparison runs
 * over SHA-256 digests, of equal length whatever was presented).
 *
 * @since 0.3.0
 * @category auth
 */
export const matches = (presented: string, secret: Redacted.Redacted<string>): boolean =>
  timingSafeEqual(digest(presented), digest(Redacted.value(secret)))

const firstString = (metadata: grpc.Metadata, key: string): string | undefined => {
  for (const value of metadata.get(key)) {
    if (typeof value === "string") return value
  }
  return undefined
}

/**
 * The secrets a call presents: its door header and any `authorization: Bearer` value.
 *
 * @since 0.1.0
 * @category auth
 */
export const presentedSecrets = (metadata: grpc.Metadata, header: string): ReadonlyArray<string> => {
  const found: Array<string> = []
  const direct = firstString(metadata, header)
  if (direct !== undefined) found.push(direct)
  const authorization = firstString(metadata, "authorization")
  if (authorization !== undefined) {
    const bearer = /^bearer\s+(.+)$/i.exec(authorization.trim())
    if (bearer !== null) found.push(bearer[1]!)
  }
  return found
}

/**
 * The Monitor door's auth with `secret` (none: loopback callers only).
 *
 * @since 0.2.0
 * @category auth
 */
export const monitorAuth = (secret: Option.Option<Redacted.Redacted<string>>): DoorAuth => ({
  door: "Monitor",
  header: "x-monitor-secret",
  secret
})

/**
 * The Fleet door's auth with `secret` (none: loopback callers only).
 *
 * @since 0.2.0
 * @category auth
 */
export const fleetAuth = (secret: Option.Option<Redacted.Redacted<string>>): DoorAuth => ({
  door: "Fleet",
  header: "x-fleet-secret",
  secret
})

/**
 * The admin door's auth with `secret` (none: loopback callers only): `x-admin-secret` or
 * `authorization: Bearer`.
 *
 * @since 0.3.0
 * @category auth
 */
export const adminAuth = (secret: Option.Option<Redacted.Redacted<string>>): DoorAuth => ({
  door: "Admin",
  header: "x-admin-secret",
  secret
})

/** Why a call may not proceed (the UNAUTHENTICATED details), or undefined when it may. */
const refusal = (
  auth: DoorAuth,
  call: { readonly peer: string; readonly metadata: grpc.Metadata }
): string | undefined => {
  if (Option.isSome(auth.secret)) {
    const secret = auth.secret.value
    // Compare every presented value (no early exit on the first), so timing says nothing either way.
    let ok = false
    for (const presented of presentedSecrets(call.metadata, auth.header)) ok = matches(presented, secret) || ok
    return ok ? undefined : `${auth.door}: missing or wrong secret (send ${auth.header} or authorization: Bearer)`
  }
  return isLoopbackPeer(call.peer)
    ? undefined
    : `${auth.door} answers loopback callers only; start the server with a secret to allow remote callers`
}

/**
 * Whether a call may use the door: the same decision as `authorize`, as a boolean.
 *
 * @since 0.2.0
 * @category auth
 */
export const isAuthorized = (
  auth: DoorAuth,
  call: { readonly peer: string; readonly metadata: grpc.Metadata }
): boolean => refusal(auth, call) === undefined

/**
 * Decides whether a call may proceed; fails with UNAUTHENTICATED otherwise.
 *
 * @since 0.1.0
 * @category auth
 */
export const authorize = (
  auth: DoorAuth,
  call: { readonly peer: string; readonly metadata: grpc.Metadata }
): Effect.Effect<void, GrpcStatusError> => {
  const refused = refusal(auth, call)
  return refused === undefined ? Effect.void : Effect.fail(statusError(Status.UNAUTHENTICATED, refused))
}
