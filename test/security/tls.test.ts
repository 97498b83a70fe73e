/**
 * TLS and mTLS really enforced, with certificates generated at test time by `openssl`, on servers started
 * the way a user starts them (`throttlekit-effect serve --tls-cert --tls-key [--tls-ca]`): a plaintext
 * client is refused, a client that does not trust the server's CA is refused, under mTLS a client without
 * a certificate (or with one from another CA) is refused, and a proper client is served. Refusals are
 * checked twice: as the typed error a `ServiceBackend` reports, and at the TLS handshake itself.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect } from "effect"
import * as tls from "node:tls"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { startServer, tempFile } from "../server/cliProcess.js"
import { type Certificates, certificates } from "../support/tls.js"

const policyFile = tempFile("tls.yaml", "limiters:\n  api:\n    strategy: gcra\n    limit: 100\n    period: 1h\n")

/** `serve` on a free port with the CA-signed server certificate, plus `extra` arguments. */
const serveWithTls = (certs: Certificates, ...extra: Array<string>) =>
  startServer([
    "--config",
    policyFile,
    "--port",
    "0",
    "--tls-cert",
    certs.server.certPath,
    "--tls-key",
    certs.server.keyPath,
    ...extra
  ])

/** One check through a ServiceBackend with `credentials`: its decision's `allowed`, or the error's tag. */
const checkWith = (address: string, credentials: grpc.ChannelCredentials) =>
  Effect.flatMap(RateLimiter, (limiter) => limiter.check("api", "k")).pipe(
    Effect.map((decision) => (decision.allowed ? "allowed" : "denied")),
    Effect.catchAll((error) => Effect.succeed(`${error._tag}: ${error.message}`)),
    Effect.provide(ServiceBackend.layer({ target: address, credentials, deadline: "5 seconds" }))
  )

/** What a raw TLS handshake with `options` ends in: "secure" once the server accepted it, else the error. */
const handshake = (port: number, options: tls.ConnectionOptions) =>
  Effect.async<string>((resume) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ALPNProtocols: ["h2"], ...options })
    let settled = false
    const done = (outcome: string) => {
      if (settled) return
      settled = true
      socket.destroy()
      resume(Effect.succeed(outcome))
    }
    // TLS 1.3 finishes the client side before the server has checked the client certificate; a refusal
    // then arrives as an alert on the first read. Write and wait, so a refused certificate shows.
    socket.once("secureConnect", () => {
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
      socket.once("data", () => done("secure"))
      setTimeout(() => done("secure"), 1500)
    })
    socket.once("error", (error) => done(`error: ${error.message}`))
    socket.once("close", () => done("closed"))
    return Effect.sync(() => socket.destroy())
  })

describe("TLS and mTLS are enforced", () => {
  it.live(
    "TLS: plaintext and untrusting clients are refused; a client trusting the CA is served",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const certs = yield* certificates
        const server = yield* serveWithTls(certs)
        expect(server.startupLine).toContain(", TLS,")

        const plaintext = yield* checkWith(server.address, grpc.credentials.createInsecure())
        const untrusting = yield* checkWith(server.address, grpc.credentials.createSsl())
        const trusting = yield* checkWith(server.address, grpc.credentials.createSsl(certs.ca.cert))
        console.log(`[tls] plaintext: ${plaintext}; untrusting: ${untrusting}; trusting: ${trusting}`)
        expect(plaintext).toMatch(/^ServiceUnavailable/)
        expect(untrusting).toMatch(/^ServiceUnavailable/)
        expect(trusting).toBe("allowed")

        // At the handshake: an unknown CA fails verification; trusting the CA completes it.
        expect(yield* handshake(server.port, { ca: certs.rogueCa.cert, servername: "localhost" })).toMatch(/^error: /)
        expect(yield* handshake(server.port, { ca: certs.ca.cert, servername: "localhost" })).toBe("secure")
      })),
    { timeout: 180_000 }
  )

  it.live(
    "mTLS: no certificate or a rogue CA's certificate is refused; a certificate signed by the CA is served",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const certs = yield* certificates
        const server = yield* serveWithTls(certs, "--tls-ca", certs.ca.certPath)
        expect(server.startupLine).toContain(", mTLS,")

        const results = {
          plaintext: yield* checkWith(server.address, grpc.credentials.createInsecure()),
          noCertificate: yield* checkWith(server.address, grpc.credentials.createSsl(certs.ca.cert)),
          rogueCertificate: yield* checkWith(
            server.address,
            grpc.credentials.createSsl(certs.ca.cert, certs.rogueClient.key, certs.rogueClient.cert)
          ),
          properCertificate: yield* checkWith(
            server.address,
            grpc.credentials.createSsl(certs.ca.cert, certs.client.key, certs.client.cert)
          )
        }
        console.log(`[mtls] ${JSON.stringify(results)}`)
        expect(results.plaintext).toMatch(/^ServiceUnavailable/)
        expect(results.noCertificate).toMatch(/^ServiceUnavailable/)
        expect(results.rogueCertificate).toMatch(/^ServiceUnavailable/)
        expect(results.properCertificate).toBe("allowed")

        // At the handshake itself.
        const base = { ca: certs.ca.cert, servername: "localhost" }
        expect(yield* handshake(server.port, base)).not.toBe("secure")
        expect(yield* handshake(server.port, { ...base, key: certs.rogueClient.key, cert: certs.rogueClient.cert }))
          .not.toBe("secure")
        expect(yield* handshake(server.port, { ...base, key: certs.client.key, cert: certs.client.cert })).toBe(
          "secure"
        )
      })),
    { timeout: 180_000 }
  )
})
