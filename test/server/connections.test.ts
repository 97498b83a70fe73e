/**
 * The server's connections are bounded, on the real server (`ThrottleKitServer.layer` on loopback, and
 * the `serve` binary with its flags), watched from raw `net` / `tls` / `http2` clients:
 * - sockets that never speak HTTP/2 (silent, a partial preface, garbage, a TLS handshake never started
 *   or never followed by the preface) are closed by the handshake deadline (garbage at once), not later;
 * - connections over the cap are closed as soon as they are accepted, and a real client is refused
 *   while the cap is full, then served once the silent sockets are gone;
 * - a connection that finished its handshake is not touched by the deadline; without a call it is
 *   closed by the idle timeout (a GOAWAY);
 * - real clients, plaintext and TLS, are served throughout.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Duration, Effect, Layer } from "effect"
import { readFileSync } from "node:fs"
import * as http2 from "node:http2"
import * as net from "node:net"
import * as path from "node:path"
import * as tls from "node:tls"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { startServer, tempFile } from "./cliProcess.js"

const POLICIES = "limiters:\n  api:\n    strategy: gcra\n    limit: 1000\n    period: 1s\n"

const fixture = (name: string) => path.join(import.meta.dirname, "fixtures", name)
const ca = readFileSync(fixture("ca.pem"))
const serverTls = { cert: readFileSync(fixture("server.pem")), key: readFileSync(fixture("server.key")) }

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/** The server under test, for the life of the scope. */
const serve = (options: Partial<ThrottleKitServer.ThrottleKitServerOptions>) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(POLICIES)
    const context = yield* Layer.build(
      ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, ...options })
    )
    return Context.get(context, ThrottleKitServer.GrpcServer)
  })

/** One client connection, as seen from the client: when it connected and when the server closed it. */
interface Probe {
  readonly socket: net.Socket
  connectedAt: number
  closedAt: number | undefined
}

const lifetime = (probe: Probe) => (probe.closedAt ?? Date.now()) - probe.connectedAt
const closedCount = (probes: ReadonlyArray<Probe>) => probes.filter((p) => p.closedAt !== undefined).length

/** Watches `socket` (connected when `event` fires); destroyed when the scope closes. */
const watch = (socket: net.Socket, event: "connect" | "secureConnect") =>
  Effect.acquireRelease(
    Effect.async<Probe>((resume) => {
      const probe: Probe = { socket, connectedAt: 0, closedAt: undefined }
      socket.on("error", () => {})
      socket.on("data", () => {})
      socket.once("close", () => {
        probe.closedAt = Date.now()
        if (probe.connectedAt === 0) resume(Effect.succeed(probe))
      })
      socket.once(event, () => {
        probe.connectedAt = Date.now()
        resume(Effect.succeed(probe))
      })
    }),
    (probe) => Effect.sync(() => probe.socket.destroy())
  )

/** `n` raw TCP connections to `port` that never send a byte. */
const silentSockets = (port: number, n: number) =>
  Effect.forEach(
    Array.from({ length: n }),
    () => watch(net.connect({ host: "127.0.0.1", port }), "connect"),
    { concurrency: 10 }
  )

/** Polls `condition` every 20 ms until it holds; fails the test after `ms`. */
const waitUntil = (what: string, condition: () => boolean, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`not within ${ms} ms: ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

/** One check through a fresh ServiceBackend: "allowed", or the error's tag. */
const checkVia = (address: string, credentials?: grpc.ChannelCredentials) =>
  Effect.flatMap(RateLimiter, (limiter) => limiter.check("api", "k")).pipe(
    Effect.map((decision) => (decision.allowed ? "allowed" : "denied")),
    Effect.catchAll((error) => Effect.succeed(error._tag)),
    Effect.provide(ServiceBackend.layer({
      target: address,
      deadline: "1 second",
      ...(credentials === undefined ? {} : { credentials })
    }))
  )

// Generous slack: two shared vCPUs. The lower bounds are what the test is about (closed by the
// deadline, not before it), the upper bounds that it is closed at all.
const SLACK_MS = 2500

describe("connection bounds", () => {
  it.live(
    "silent sockets are closed by the handshake deadline; over the cap, at once; real clients after",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const handshakeMs = 3000
        const server = yield* serve({ handshakeTimeoutMs: handshakeMs, maxConnections: 50 })
        const probes = yield* silentSockets(server.port, 80)

        // The 30 over the cap are closed as soon as they are accepted, long before the deadline.
        yield* waitUntil("30 sockets closed", () => closedCount(probes) >= 30, handshakeMs / 2)
        expect(closedCount(probes)).toBe(30)
        expect(yield* server.connections).toBe(50)
        for (const probe of probes.filter((p) => p.closedAt !== undefined)) {
          expect(lifetime(probe)).toBeLessThan(handshakeMs / 2)
        }
        // While the cap is full, a real client cannot get in.
        expect(yield* checkVia(server.address)).toBe("ServiceUnavailable")

        // The 50 held sockets: none closed before the deadline, all by it.
        yield* waitUntil("every socket closed", () => closedCount(probes) === 80, handshakeMs + SLACK_MS)
        const held = probes.filter((p) => lifetime(p) >= handshakeMs / 2)
        expect(held).toHaveLength(50)
        for (const probe of held) {
          expect(lifetime(probe)).toBeGreaterThanOrEqual(handshakeMs - 50)
          expect(lifetime(probe)).toBeLessThan(handshakeMs + SLACK_MS)
        }
        yield* waitUntil("the server counts no connection", () => Effect.runSync(server.connections) === 0, 1000)
        // The cap is free again: a real client is served.
        expect(yield* checkVia(server.address)).toBe("allowed")
      })),
    { timeout: 60_000 }
  )

  it.live(
    "garbage is closed at once, a partial preface at the deadline; an HTTP/2 client stays until idle",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const handshakeMs = 800
        const idleMs = 2500
        const server = yield* serve({ handshakeTimeoutMs: handshakeMs, idleTimeoutMs: idleMs })

        const garbage = yield* watch(net.connect({ host: "127.0.0.1", port: server.port }), "connect")
        garbage.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        const partial = yield* watch(net.connect({ host: "127.0.0.1", port: server.port }), "connect")
        partial.socket.write(PREFACE.slice(0, 16))

        // A real HTTP/2 connection that never makes a call.
        const session = http2.connect(`http://${server.address}`)
        yield* Effect.addFinalizer(() => Effect.sync(() => session.destroy()))
        let goaway = false
        let sessionClosedAt: number | undefined
        session.on("error", () => {})
        session.on("goaway", () => (goaway = true))
        session.on("close", () => (sessionClosedAt = Date.now()))
        const sessionStart = yield* Effect.async<number>((resume) => {
          session.once("remoteSettings", () => resume(Effect.succeed(Date.now())))
        })

        yield* waitUntil("garbage closed", () => garbage.closedAt !== undefined, handshakeMs)
        expect(lifetime(garbage)).toBeLessThan(handshakeMs)
        yield* waitUntil("partial preface closed", () => partial.closedAt !== undefined, handshakeMs + SLACK_MS)
        expect(lifetime(partial)).toBeGreaterThanOrEqual(handshakeMs - 50)

        // Past the handshake deadline the HTTP/2 connection is still there; the idle timeout closes it.
        yield* Effect.sleep(Duration.millis(handshakeMs * 2))
        expect(sessionClosedAt).toBeUndefined()
        yield* waitUntil("idle session closed", () => sessionClosedAt !== undefined, idleMs + SLACK_MS)
        expect(goaway).toBe(true)
        expect(sessionClosedAt! - sessionStart).toBeGreaterThanOrEqual(idleMs - 100)
        // A channel that was closed for idling reconnects on its next call.
        expect(yield* checkVia(server.address)).toBe("allowed")
      })),
    { timeout: 60_000 }
  )

  it.live(
    "TLS: a handshake never started, or never followed by the preface, is closed by the deadline",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const handshakeMs = 1000
        const server = yield* serve({ tls: serverTls, handshakeTimeoutMs: handshakeMs })
        expect(server.security).toBe("TLS")

        const silent = yield* silentSockets(server.port, 3)
        const connectTls = () =>
          watch(
            tls.connect({ host: "127.0.0.1", port: server.port, ca, servername: "localhost", ALPNProtocols: ["h2"] }),
            "secureConnect"
          )
        // TLS completes; then nothing, or garbage.
        const quietTls = yield* connectTls()
        const chattyTls = yield* connectTls()
        chattyTls.socket.write("GET / HTTP/1.1\r\n\r\n")

        yield* waitUntil("garbage after TLS closed", () => chattyTls.closedAt !== undefined, handshakeMs)
        yield* waitUntil(
          "silent and TLS-only sockets closed",
          () => closedCount([...silent, quietTls]) === 4,
          handshakeMs + SLACK_MS
        )
        for (const probe of silent) expect(lifetime(probe)).toBeGreaterThanOrEqual(handshakeMs - 50)
        // Measured from the end of its TLS handshake, so a little under the deadline from its accept.
        expect(lifetime(quietTls)).toBeGreaterThanOrEqual(handshakeMs - 300)
        expect(lifetime(quietTls)).toBeLessThan(handshakeMs + SLACK_MS)

        // A real TLS client is served, before and after the deadline has passed on its connection.
        const credentials = grpc.credentials.createSsl(ca)
        const target = `localhost:${server.port}`
        const twice = Effect.flatMap(RateLimiter, (limiter) =>
          Effect.gen(function*() {
            const first = yield* limiter.check("api", "tls")
            yield* Effect.sleep(Duration.millis(handshakeMs * 1.5))
            const second = yield* limiter.check("api", "tls")
            return [first.allowed, second.allowed]
          })).pipe(Effect.provide(ServiceBackend.layer({ target, credentials, deadline: "2 seconds" })))
        expect(yield* twice).toEqual([true, true])
      })),
    { timeout: 60_000 }
  )

  it.live(
    "serve --handshake-timeout-ms --max-connections: the binary enforces both",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cli = yield* startServer([
          "--config",
          tempFile("conn.yaml", POLICIES),
          "--port",
          "0",
          "--handshake-timeout-ms",
          "1500",
          "--max-connections",
          "5",
          "--idle-timeout-ms",
          "60000"
        ])
        const probes = yield* silentSockets(cli.port, 8)
        yield* waitUntil("3 over the cap closed", () => closedCount(probes) >= 3, 1000)
        expect(closedCount(probes)).toBe(3)
        yield* waitUntil("all closed", () => closedCount(probes) === 8, 1500 + SLACK_MS)
        expect(probes.filter((p) => lifetime(p) >= 1450)).toHaveLength(5)
        expect(yield* checkVia(cli.address)).toBe("allowed")
        const ended = yield* cli.stop
        expect(ended.code).toBe(0)
      })),
    { timeout: 120_000 }
  )
})
