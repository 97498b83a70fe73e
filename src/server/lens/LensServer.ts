/**
 * The Lens (`serve --lens-port`): a small web page with the Monitor's picture, served over HTTP on its own
 * port. `GET /` answers the page (one self-contained HTML document: no external asset, no build step);
 * `GET /api/snapshot` the picture as JSON (`LensSnapshot`: per policy, allowed and denied counts over the
 * last minutes as sampled by the Lens, totals and top denied keys; the guards, in flight against their
 * ceiling; the last denials); `GET /api/denials` the live denials as Server-Sent Events (from the hub's
 * Watch feed). Any other path is 404, any other method 405.
 *
 * Access (see `Access.ts`): without a secret, loopback only (the listener must bind a loopback address:
 * another one without a secret fails at startup); with a secret, every request carries it, as
 * `Authorization: Bearer <secret>` or as the cookie a browser gets by opening `/?token=<secret>` once.
 *
 * Bounded as the `/metrics` listener (64 connections, 8 KiB of headers, bounded request times), plus at
 * most `maxDenialStreams` live streams at once (one more is answered 503). Closing the scope stops
 * accepting, ends every stream and closes every connection at once: an open page never holds the server
 * open, and the close is bounded by 1 s whatever happens.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import { isLoopbackPeer } from "../Auth.js"
import { formatAddress } from "../GrpcServer.js"
import { listen, operatorLimits, send } from "../HttpListener.js"
import type { Hub } from "../monitor/Hub.js"
import * as Access from "./Access.js"
import * as DenialStream from "./DenialStream.js"
import * as History from "./History.js"
import { LensSnapshotJson } from "./LensSnapshot.js"
import * as Page from "./Page.js"

/**
 * Where the Lens listens and who may read it.
 *
 * @since 0.3.0
 * @category models
 */
export interface LensServerOptions {
  /** The port; 0 picks a free one. */
  readonly port: number
  /** The interface to bind (default `127.0.0.1`); a non-loopback one needs a `secret`. */
  readonly host?: string
  /** The secret every request must carry; none: loopback only. */
  readonly secret?: Redacted.Redacted<string>
  /** How long without a denial before a live stream sends a comment line, in ms (default 15 000). */
  readonly heartbeatMs?: number
}

/**
 * The Lens, listening.
 *
 * @since 0.3.0
 * @category models
 */
export interface RunningLensServer {
  readonly host: string
  readonly port: number
  /** `host:port`, with an IPv6 host in brackets. */
  readonly address: string
  /** Whether a secret guards it. */
  readonly guarded: boolean
}

/**
 * The Lens of a running server: its address, or none when the server serves no Lens.
 *
 * @since 0.3.0
 * @category tags
 */
export class LensServer
  extends Context.Tag("throttlekit-effect/LensServer")<LensServer, Option.Option<RunningLensServer>>()
{}

/**
 * The Lens could not start: it could not bind its address, or it was asked to serve a non-loopback
 * address without a secret.
 *
 * @since 0.3.0
 * @category errors
 */
export class LensServerError extends Schema.TaggedError<LensServerError>()("LensServerError", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot serve the Lens on ${this.address}: ${this.reason}`
  }
}

/**
 * The interface the Lens binds by default: loopback only.
 *
 * @since 0.3.0
 * @category constants
 */
export const DEFAULT_LENS_HOST = "127.0.0.1"

/**
 * The Lens's bounds: those of the listener, the live streams open at once, how long a stream's write may
 * wait on a reader that does not read, the history (10 minutes of 5 s intervals), and the denials a
 * snapshot carries.
 *
 * @since 0.3.0
 * @category constants
 */
export const limits = {
  ...operatorLimits,
  maxDenialStreams: 16,
  stallMs: 30_000,
  heartbeatMs: 15_000,
  sampleMs: 5000,
  samples: 120,
  recentDenials: 50
} as const

const TEXT = "text/plain; charset=utf-8"

/** What request targets are read against (only their path and query are used). */
const BASE = "http://lens.invalid"

/** Sent with every answer: nothing is cached, sniffed, framed or referred. */
const COMMON_HEADERS: Http.OutgoingHttpHeaders = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY"
}

const encodeSnapshot = Schema.encodeSync(LensSnapshotJson)

/**
 * Binds the Lens over `hub` and serves it for the life of the scope.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: LensServerOptions,
  hub: Hub
): Effect.Effect<RunningLensServer, LensServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? DEFAULT_LENS_HOST
    const requested = formatAddress(host, options.port)
    const secret = Option.fromNullable(options.secret)
    if (Option.isNone(secret) && !isLoopbackPeer(host)) {
      return yield* new LensServerError({
        address: requested,
        reason: "a non-loopback address needs a secret (the page shows keys)"
      })
    }
    const heartbeatMs = options.heartbeatMs ?? limits.heartbeatMs
    const page = Page.make()
    const history = yield* History.make(hub, { sampleMs: limits.sampleMs, samples: limits.samples })
    // Created first, so it is closed last: a stream or a snapshot still running once the listener is
    // closed is interrupted.
    const run = yield* FiberSet.makeRuntime<never>()
    let streams = 0
    // The session cookie is named after the port, known once bound.
    let boundPort = options.port
    const access = Access.make(secret, () => boundPort)

    const refuse = (response: Http.ServerResponse, verdict: Access.Verdict & { _tag: "Refused" }) =>
      send(response, verdict.status, TEXT, `${verdict.reason}\n`, {
        ...COMMON_HEADERS,
        ...(verdict.status === 401 ? { "www-authenticate": "Bearer realm=\"throttlekit-lens\"" } : {})
      })

    const snapshot = (response: Http.ServerResponse) =>
      Effect.flatMap(hub.snapshot, (raw) =>
        Effect.sync(() => {
          const picture = history.picture(raw, limits.recentDenials, { open: streams, max: limits.maxDenialStreams })
          send(response, 200, "application/json; charset=utf-8", encodeSnapshot(picture), COMMON_HEADERS)
        }))

    const denials = (response: Http.ServerResponse, policy: string) => {
      if (streams >= limits.maxDenialStreams) {
        return send(response, 503, TEXT, `at most ${limits.maxDenialStreams} live streams at once\n`, {
          ...COMMON_HEADERS,
          "retry-after": "5"
        })
      }
      streams++
      const fiber = run(
        DenialStream.serve(response, { hub, policy, heartbeatMs, stallMs: limits.stallMs, headers: COMMON_HEADERS })
          .pipe(Effect.ensuring(Effect.sync(() => streams--)))
      )
      // The client went: its stream stops (and unsubscribes) at once.
      response.once("close", () => fiber.unsafeInterruptAsFork(FiberId.none))
    }

    const handle = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      if (request.method !== "GET") {
        // The body (if any) is never read: the connection closes after the answer.
        return send(response, 405, TEXT, "method not allowed\n", { allow: "GET", connection: "close" })
      }
      const target = request.url ?? "/"
      if (!URL.canParse(target, BASE)) return send(response, 400, TEXT, "bad request target\n", COMMON_HEADERS)
      const url = new URL(target, BASE)
      const token = url.searchParams.get("token")
      if (url.pathname === "/" && token !== null && access.guarded) {
        // The secret is traded for the session cookie, and leaves the address bar at once (a relative
        // redirect, so that a Lens served under a path prefix keeps it).
        return Option.match(access.session(token), {
          onNone: () => refuse(response, { _tag: "Refused", status: 401, reason: "wrong token" }),
          onSome: (cookie) =>
            send(response, 303, TEXT, "see ./\n", { ...COMMON_HEADERS, location: "./", "set-cookie": cookie })
        })
      }
      const verdict = access.check(request)
      if (verdict._tag === "Refused") return refuse(response, verdict)
      switch (url.pathname) {
        case "/":
          return send(response, 200, "text/html; charset=utf-8", page.html, {
            ...COMMON_HEADERS,
            "content-security-policy": page.contentSecurityPolicy
          })
        case "/api/snapshot":
          return void run(snapshot(response))
        case "/api/denials":
          return denials(response, url.searchParams.get("policy") ?? "")
        default:
          return send(response, 404, TEXT, "not found (try /, /api/snapshot or /api/denials)\n", COMMON_HEADERS)
      }
    }

    const port = yield* listen({
      host,
      port: options.port,
      limits,
      handle,
      // Once listening, a server error (a failed accept) is logged; the listener keeps serving.
      onError: (error) => void run(Effect.logWarning(`Lens listener: ${error.message}`))
    }).pipe(Effect.mapError((error) => new LensServerError({ address: requested, reason: error.reason })))
    boundPort = port
    return { host, port, address: formatAddress(host, port), guarded: access.guarded }
  })
