/**
 * Who may read the Lens (the page shows keys, so it is guarded as the Monitor door is).
 *
 * Without a secret: loopback only. The listener binds a loopback address (a non-loopback one without a
 * secret is refused at startup), the peer must be a loopback address, and the request's `Host` must name
 * one (`localhost`, `127.x.x.x`, `[::1]`, any port), so that a web page whose name was rebound to
 * 127.0.0.1 (DNS rebinding) cannot read it through a visitor's browser.
 *
 * With a secret: every request, loopback included, must carry it, as `Authorization: Bearer <secret>`
 * (scripts, curl) or as the session cookie a browser gets by opening `/?token=<secret>` once. That answer
 * is a redirect to the page (`./`) which sets the cookie (`HttpOnly`, `SameSite=Strict`, named after the port), so the
 * secret leaves the address bar at once and the page's own requests (`fetch`, `EventSource`, which cannot
 * send headers) carry the cookie. The cookie holds an HMAC of the secret, not the secret: a leaked cookie
 * opens this Lens and nothing else, and changing the secret voids it. Every comparison runs in constant
 * time; neither the secret nor what was presented is ever logged or echoed.
 *
 * @since 0.3.0
 */
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createHmac } from "node:crypto"
import type * as Http from "node:http"
import { isLoopbackPeer, matches } from "../Auth.js"

/**
 * What to do with a request: serve it, or refuse it with this status and one-line reason.
 *
 * @since 0.3.0
 * @category models
 */
export type Verdict =
  | { readonly _tag: "Allowed" }
  | { readonly _tag: "Refused"; readonly status: 401 | 403; readonly reason: string }

/**
 * The Lens's access rules.
 *
 * @since 0.3.0
 * @category models
 */
export interface Access {
  /** Whether a secret guards the Lens. */
  readonly guarded: boolean
  /** The verdict on a request. */
  readonly check: (request: Http.IncomingMessage) => Verdict
  /** The `Set-Cookie` value that opens a session when `token` is the secret; none otherwise. */
  readonly session: (token: string) => Option.Option<string>
}

const ALLOWED: Verdict = { _tag: "Allowed" }

const NEEDS_SECRET = "the Lens needs its secret: open /?token=<secret> once, or send Authorization: Bearer <secret>"

/** The session cookie's name: per port, so that two Lenses on one host keep their own. */
const cookieName = (port: number) => `tk_lens_${port}`

/** The value of cookie `name` in a `Cookie` header, if any. */
const cookieValue = (header: string | undefined, name: string): string | undefined => {
  if (header === undefined) return undefined
  for (const part of header.split(";")) {
    const eq = part.indexOf("=")
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** The bearer token of an `Authorization` header, if any. */
const bearer = (header: string | undefined): string | undefined => {
  const match = header === undefined ? null : /^bearer\s+(.+)$/i.exec(header.trim())
  return match === null ? undefined : match[1]!
}

/**
 * The rules of a Lens guarded by `secret` (none: loopback only), listening on the port `port` gives (read
 * at each request: the cookie is named after the port bound).
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (secret: Option.Option<Redacted.Redacted<string>>, port: () => number): Access => {
  if (Option.isNone(secret)) {
    return {
      guarded: false,
      check: (request) => {
        const peer = request.socket.remoteAddress ?? ""
        const host = request.headers.host ?? ""
        return isLoopbackPeer(peer) && isLoopbackPeer(host)
          ? ALLOWED
          : {
            _tag: "Refused",
            status: 403,
            reason: "the Lens answers loopback only (start it with a secret to open it to other hosts)"
          }
      },
      session: () => Option.none()
    }
  }
  const key = secret.value
  const sessionValue = createHmac("sha256", Redacted.value(key)).update("throttlekit-effect lens session v1")
    .digest("base64url")
  const session = Redacted.make(sessionValue)
  return {
    guarded: true,
    check: (request) => {
      const presentedBearer = bearer(request.headers.authorization)
      const presentedCookie = cookieValue(request.headers.cookie, cookieName(port()))
      // Both are compared when both are present (no early exit), so timing says nothing either way.
      const byBearer = presentedBearer !== undefined && matches(presentedBearer, key)
      const byCookie = presentedCookie !== undefined && matches(presentedCookie, session)
      return byBearer || byCookie ? ALLOWED : { _tag: "Refused", status: 401, reason: NEEDS_SECRET }
    },
    session: (token) =>
      matches(token, key)
        ? Option.some(`${cookieName(port())}=${sessionValue}; Path=/; HttpOnly; SameSite=Strict`)
        : Option.none()
  }
}
