/**
 * The Lens over HTTP (`ThrottleKitServer.layer`'s `lens`, as `serve --lens-port` builds it): real gRPC
 * checks through the `ServiceBackend` client, real HTTP requests with `node:http` (which lets a test set
 * the `Host` header and read an event stream as it comes).
 *
 * Access: loopback only without a secret (the `Host` must name loopback too, against DNS rebinding; a
 * non-loopback address fails at startup); with a secret, 401 without it on every path, the bearer token,
 * and `/?token=` traded for a session cookie that is not the secret. The page is one document that loads
 * nothing else; the snapshot counts exactly what the checks decided; the event stream carries each
 * denial, follows one policy when asked, sends heartbeats, is capped (one more is 503), unsubscribes when
 * the client goes, and ends when the server closes (which an open stream never holds up).
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Data, Effect, Exit, Layer, Option, Redacted, Schedule, Schema, Scope } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import * as ServiceBackend from "../../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../../src/PolicyFile.js"
import { type LensServerOptions, limits as lensLimits } from "../../../src/server/lens/LensServer.js"
import { LensSnapshotJson } from "../../../src/server/lens/LensSnapshot.js"
import { MonitorHub } from "../../../src/server/monitor/Hub.js"
import * as ThrottleKitServer from "../../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../../src/services/RateLimiter.js"
import { lensConfig } from "./lensConfig.js"

class HttpFailure extends Data.TaggedError("HttpFailure")<{ readonly reason: string }> {}

/** Our server on a free loopback port, with the Lens on another, for the life of the scope. */
const startServer = (lens: Omit<LensServerOptions, "port"> = {}) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(lensConfig, "test")
    const context = yield* Layer.build(ThrottleKitServer.layer({
      policies,
      host: "127.0.0.1",
      port: 0,
      lens: { port: 0, ...lens }
    }))
    const grpc = Context.get(context, ThrottleKitServer.GrpcServer)
    const running = Option.getOrThrowWith(
      Context.get(context, ThrottleKitServer.LensServer),
      () => new Error("the server serves no Lens")
    )
    const limiter = yield* Effect.map(
      Layer.build(ServiceBackend.layer({ target: grpc.address, deadline: "5 seconds", coalesceChecks: false })),
      Context.get(RateLimiter)
    )
    return { lens: running, hub: Context.get(context, MonitorHub), limiter }
  })

interface Answer {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** One request on a fresh connection; the whole answer. */
const request = (address: string, path: string, headers: Http.OutgoingHttpHeaders = {}, method = "GET") =>
  Effect.async<Answer, HttpFailure>((resume) => {
    const req = Http.request(`http://${address}${path}`, { method, headers, agent: false }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, body })))
    })
    req.on("error", (error) => resume(Effect.fail(new HttpFailure({ reason: error.message }))))
    req.end()
    return Effect.sync(() => req.destroy())
  })

/** `text` sent as is on a fresh connection; the answer's status line. */
const rawStatusLine = (address: string, text: string) =>
  Effect.async<string, HttpFailure>((resume) => {
    const colon = address.lastIndexOf(":")
    const socket = Net.connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)) })
    let answer = ""
    socket.setEncoding("utf8")
    socket.on("connect", () => socket.write(text))
    socket.on("data", (chunk: string) => {
      answer += chunk
      if (answer.includes("\r\n")) {
        socket.destroy()
        resume(Effect.succeed(answer.slice(0, answer.indexOf("\r\n"))))
      }
    })
    socket.on("error", (error) => resume(Effect.fail(new HttpFailure({ reason: error.message }))))
    return Effect.sync(() => socket.destroy())
  })

/** An event stream being read: what came so far, and whether it ended. */
interface OpenStream {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly text: () => string
  readonly ended: () => boolean
  /** Drops the connection (the client goes). */
  readonly close: () => void
}

/** Opens `path` and keeps reading it; the connection is dropped when the scope closes. */
const openStream = (address: string, path: string, headers: Http.OutgoingHttpHeaders = {}) =>
  Effect.acquireRelease(
    Effect.async<OpenStream, HttpFailure>((resume) => {
      const req = Http.get(`http://${address}${path}`, { headers, agent: false }, (res) => {
        let text = ""
        let ended = false
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (text += chunk))
        res.on("close", () => (ended = true))
        resume(Effect.succeed({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: () => text,
          ended: () => ended,
          close: () => req.destroy()
        }))
      })
      req.on("error", (error) => resume(Effect.fail(new HttpFailure({ reason: error.message }))))
    }),
    (stream) => Effect.sync(stream.close)
  )

/** Waits (polling) until `check` holds; gives up after 10 s so that a test fails rather than hangs. */
const until = (what: string, check: () => boolean) =>
  Effect.suspend(() => check() ? Effect.void : Effect.fail(new HttpFailure({ reason: `not yet: ${what}` }))).pipe(
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new HttpFailure({ reason: `never: ${what}` }) })
  )

const decodeSnapshot = Schema.decodeUnknown(LensSnapshotJson)

/** The denials an event stream carried so far. */
const denialsIn = (text: string) =>
  text.split("\n\n").filter((block) => block.startsWith("event: denial\n")).map((block) =>
    JSON.parse(block.slice(block.indexOf("data: ") + 6)) as { policy: string; key: string; limit: number }
  )

describe("the Lens over HTTP", () => {
  it.live(
    "without a secret: the page, the snapshot, loopback callers and loopback Host names only",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { lens, limiter } = yield* startServer()
        expect(lens.host).toBe("127.0.0.1")
        expect(lens.guarded).toBe(false)

        const page = yield* request(lens.address, "/")
        expect(page.status).toBe(200)
        expect(page.headers["content-type"]).toBe("text/html; charset=utf-8")
        expect(page.body).toContain("<title>ThrottleKit Lens</title>")
        // One document: nothing is loaded from elsewhere, and the policy allows this script and style only.
        expect(page.body).not.toMatch(/\s(src|href)\s*=/i)
        expect(page.body).not.toMatch(/@import|url\(/i)
        const csp = page.headers["content-security-policy"] ?? ""
        expect(csp).toContain("default-src 'none'")
        expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/)
        expect(csp).toContain("connect-src 'self'")
        expect(page.headers["cache-control"]).toBe("no-store")

        // Decisions: 3 allowed and 2 denied on one key, and one allowed on another policy.
        const decided = yield* Effect.forEach(Array.from({ length: 5 }), () => limiter.check("login", "alice"))
        expect(decided.map((d) => d.allowed)).toEqual([true, true, true, false, false])
        expect((yield* limiter.check("export", "bob")).allowed).toBe(true)

        const answer = yield* request(lens.address, "/api/snapshot")
        expect(answer.status).toBe(200)
        expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8")
        const snapshot = yield* decodeSnapshot(answer.body)
        expect(snapshot.policies.map((p) => p.name)).toEqual(["login", "export", "search", "pool"])
        const login = snapshot.policies.find((p) => p.name === "login")!
        expect(login).toMatchObject({ allowed: 3, denied: 2, allowedTotal: 3, deniedTotal: 2, limit: 3 })
        expect(login.topDenied).toEqual([{ key: "alice", count: 2 }])
        // The history counts every decision once, in intervals ending at `at` (the last one: now).
        expect(login.allowedHistory.length).toBe(snapshot.at.length)
        expect(login.allowedHistory.reduce((a, b) => a + b, 0)).toBe(3)
        expect(login.deniedHistory.reduce((a, b) => a + b, 0)).toBe(2)
        expect(snapshot.at[snapshot.at.length - 1]).toBe(snapshot.meta.generatedAt)
        expect(snapshot.since).toBeLessThanOrEqual(snapshot.at[0]!)
        expect(snapshot.sampleMs * lensLimits.samples).toBe(snapshot.historyMs)
        expect(snapshot.guards).toEqual([
          { name: "pool", limit: 4, inflight: 0, share: 0, lGlobal: 0, nodes: 0, fenced: false }
        ])
        expect(snapshot.recentDenials.map((d) => [d.policy, d.key])).toEqual([["login", "alice"], ["login", "alice"]])
        expect(snapshot.streams).toEqual({ open: 0, max: lensLimits.maxDenialStreams })

        // A page whose name was rebound to 127.0.0.1 sends its own name as Host: refused.
        const [port] = lens.address.split(":").slice(-1)
        const rebound = yield* request(lens.address, "/api/snapshot", { host: `attacker.example:${port}` })
        expect(rebound.status).toBe(403)
        expect(rebound.body).toContain("loopback only")
        expect((yield* request(lens.address, "/api/denials", { host: "attacker.example" })).status).toBe(403)
        expect((yield* request(lens.address, "/", { host: `localhost:${port}` })).status).toBe(200)
        expect((yield* request(lens.address, "/", { host: `[::1]:${port}` })).status).toBe(200)

        expect((yield* request(lens.address, "/nope")).status).toBe(404)
        // A target that is no URL is a 400, and the Lens serves on.
        const bad = yield* rawStatusLine(lens.address, "GET //[ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        expect(bad).toBe("HTTP/1.1 400 Bad Request")
        expect((yield* request(lens.address, "/")).status).toBe(200)
        const post = yield* request(lens.address, "/api/snapshot", {}, "POST")
        expect(post.status).toBe(405)
        expect(post.headers.allow).toBe("GET")
      })),
    60_000
  )

  it.live("a non-loopback Lens without a secret fails the server's startup", () =>
    Effect.gen(function*() {
      const policies = yield* PolicyFile.parse(lensConfig, "test")
      const error = yield* Effect.flip(Effect.scoped(Layer.build(ThrottleKitServer.layer({
        policies,
        host: "127.0.0.1",
        port: 0,
        lens: { port: 0, host: "0.0.0.0" }
      }))))
      expect(error._tag).toBe("LensServerError")
      expect(error.message).toBe(
        "cannot serve the Lens on 0.0.0.0:0: a non-loopback address needs a secret (the page shows keys)"
      )
    }), 60_000)

  it.live(
    "with a secret: 401 without it on every path; the bearer token; /?token= traded for a cookie",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const secret = "lens-s3cret"
        const { lens } = yield* startServer({ secret: Redacted.make(secret) })
        expect(lens.guarded).toBe(true)
        const port = lens.address.split(":").slice(-1)[0]!

        // Loopback callers too: with a secret, everyone presents it.
        for (const path of ["/", "/api/snapshot", "/api/denials", "/nope"]) {
          const refused = yield* request(lens.address, path)
          expect(refused.status).toBe(401)
          expect(refused.headers["www-authenticate"]).toBe("Bearer realm=\"throttlekit-lens\"")
          expect(refused.body).not.toContain(secret)
        }
        expect((yield* request(lens.address, "/api/snapshot", { authorization: "Bearer wrong" })).status).toBe(401)
        expect((yield* request(lens.address, "/api/snapshot", { authorization: `Bearer ${secret}` })).status).toBe(200)
        expect((yield* request(lens.address, "/", { authorization: `bearer ${secret}` })).status).toBe(200)

        // The token handed once: a redirect to the page that sets the session cookie (not the secret itself).
        const wrong = yield* request(lens.address, "/?token=nope")
        expect(wrong.status).toBe(401)
        expect(wrong.headers["set-cookie"]).toBeUndefined()
        const handed = yield* request(lens.address, `/?token=${secret}`)
        expect(handed.status).toBe(303)
        expect(handed.headers.location).toBe("./")
        const setCookie = handed.headers["set-cookie"]?.[0] ?? ""
        expect(setCookie).toMatch(new RegExp(`^tk_lens_${port}=[A-Za-z0-9_-]+; Path=/; HttpOnly; SameSite=Strict$`))
        const cookie = setCookie.split(";")[0]!
        expect(cookie).not.toContain(secret)
        expect((yield* request(lens.address, "/", { cookie })).status).toBe(200)
        expect((yield* request(lens.address, "/api/snapshot", { cookie: `other=1; ${cookie}` })).status).toBe(200)
        const stream = yield* openStream(lens.address, "/api/denials", { cookie })
        expect(stream.status).toBe(200)
        expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8")
        // A cookie of another value, or for another port, opens nothing.
        expect((yield* request(lens.address, "/", { cookie: `tk_lens_${port}=forged` })).status).toBe(401)
        expect((yield* request(lens.address, "/", { cookie: cookie.replace(`tk_lens_${port}`, "tk_lens_1") })).status)
          .toBe(401)
      })),
    60_000
  )

  it.live(
    "the live denials: each one as an event, one policy when asked, heartbeats between",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { hub, lens, limiter } = yield* startServer({ heartbeatMs: 100 })
        const all = yield* openStream(lens.address, "/api/denials")
        const loginOnly = yield* openStream(lens.address, "/api/denials?policy=login")
        expect(all.status).toBe(200)
        expect(all.headers["cache-control"]).toBe("no-store")
        // Subscribed before the headers were sent: what is denied from now on is streamed.
        expect(hub.watchers()).toBe(2)

        expect((yield* limiter.check("export", "carol")).allowed).toBe(true)
        expect((yield* limiter.check("export", "carol")).allowed).toBe(false)
        for (let i = 0; i < 3; i++) yield* limiter.check("login", "dave")
        expect((yield* limiter.check("login", "dave")).allowed).toBe(false)

        yield* until("both denials on the stream of every policy", () => denialsIn(all.text()).length === 2)
        expect(denialsIn(all.text()).map((d) => [d.policy, d.key, d.limit])).toEqual([
          ["export", "carol", 1],
          ["login", "dave", 3]
        ])
        yield* until("the login denial on the login stream", () => denialsIn(loginOnly.text()).length === 1)
        expect(denialsIn(loginOnly.text()).map((d) => d.key)).toEqual(["dave"])
        expect(all.text().startsWith("retry: 2000\n")).toBe(true)
        yield* until("a heartbeat", () => all.text().includes("\n: keep-alive\n\n"))
      })),
    60_000
  )

  it.live(
    "at most 16 streams at once (one more is 503); a client that goes is unsubscribed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { hub, lens } = yield* startServer()
        const streams = yield* Effect.forEach(
          Array.from({ length: lensLimits.maxDenialStreams }),
          () => openStream(lens.address, "/api/denials")
        )
        expect(streams.every((s) => s.status === 200)).toBe(true)
        expect(hub.watchers()).toBe(lensLimits.maxDenialStreams)
        const refused = yield* request(lens.address, "/api/denials")
        expect(refused.status).toBe(503)
        expect(refused.headers["retry-after"]).toBe("5")
        streams[0]!.close()
        yield* until("the stream's subscription ends", () => hub.watchers() === lensLimits.maxDenialStreams - 1)
        // Its slot is free again once the stream has ended on the server's side.
        const openStreams = Effect.flatMap(
          request(lens.address, "/api/snapshot"),
          (answer) => Effect.map(decodeSnapshot(answer.body), (snapshot) => snapshot.streams.open)
        )
        yield* openStreams.pipe(
          Effect.repeat({
            schedule: Schedule.spaced("20 millis"),
            until: (open) => open < lensLimits.maxDenialStreams
          }),
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new HttpFailure({ reason: "no slot freed" }) })
        )
        const again = yield* openStream(lens.address, "/api/denials")
        expect(again.status).toBe(200)
      })),
    60_000
  )

  it.live("closing the server ends the open streams at once: they never hold it open", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { hub, lens } = yield* Scope.extend(startServer({ heartbeatMs: 60_000 }), scope)
      const outside = yield* Scope.make()
      const first = yield* Scope.extend(openStream(lens.address, "/api/denials"), outside)
      const second = yield* Scope.extend(openStream(lens.address, "/api/denials?policy=login"), outside)
      expect(hub.watchers()).toBe(2)
      const snapshot = yield* decodeSnapshot((yield* request(lens.address, "/api/snapshot")).body)
      expect(snapshot.streams.open).toBe(2)
      yield* Scope.close(scope, Exit.void)
      yield* until("both streams ended", () => first.ended() && second.ended())
      const after = yield* Effect.either(request(lens.address, "/"))
      expect(after._tag).toBe("Left")
      yield* Scope.close(outside, Exit.void)
    }), 60_000)
})
