/**
 * Transport security: TLS with --tls-cert/--tls-key, and mTLS (client certificates required) with
 * --tls-ca, in process and through the CLI. The fixtures are throwaway test certificates.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { ServerTls } from "../../src/server/GrpcServer.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { runningServer } from "../service/support.js"
import { conformancePolicies } from "../support/conformance.js"
import { startServer, tempFile } from "./cliProcess.js"

const fixture = (name: string) => path.join(import.meta.dirname, "fixtures", name)
const pem = (name: string) => readFileSync(fixture(name))

const ca = pem("ca.pem")
const server = { cert: pem("server.pem"), key: pem("server.key") }
const client = { cert: pem("client.pem"), key: pem("client.key") }

const serveMemory = (tls: ServerTls) => runningServer({ policies: conformancePolicies, tls })

const checkVia = (target: string, credentials: grpc.ChannelCredentials) =>
  Effect.provide(
    Effect.flatMap(RateLimiter, (limiter) => limiter.check("burst", `tls-${Math.random()}`)),
    ServiceBackend.layer({ target, credentials, deadline: "5 seconds" })
  )

describe("TLS", () => {
  it.live("TLS: a client trusting the CA is served; a plaintext client is not", () =>
    Effect.scoped(Effect.gen(function*() {
      const running = yield* serveMemory(server)
      expect(running.security).toBe("TLS")
      expect((yield* checkVia(running.address, grpc.credentials.createSsl(ca))).allowed).toBe(true)
      const plain = yield* Effect.flip(checkVia(running.address, grpc.credentials.createInsecure()))
      expect(plain._tag).toBe("ServiceUnavailable")
    })))

  it.live("mTLS: only a client presenting a certificate signed by the CA is served", () =>
    Effect.scoped(Effect.gen(function*() {
      const running = yield* serveMemory({ ...server, ca })
      expect(running.security).toBe("mTLS")
      const withCert = grpc.credentials.createSsl(ca, client.key, client.cert)
      expect((yield* checkVia(running.address, withCert)).allowed).toBe(true)
      const anonymous = yield* Effect.flip(checkVia(running.address, grpc.credentials.createSsl(ca)))
      expect(anonymous._tag).toBe("ServiceUnavailable")
    })))

  it.live(
    "the CLI reports mTLS on its startup line and serves a client with a certificate",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const policies = tempFile("p.yaml", "limiters:\n  burst:\n    strategy: gcra\n    limit: 5\n    period: 1h\n")
        const cli = yield* startServer([
          "--config",
          policies,
          "--port",
          "0",
          "--tls-cert",
          fixture("server.pem"),
          "--tls-key",
          fixture("server.key"),
          "--tls-ca",
          fixture("ca.pem")
        ])
        expect(cli.startupLine).toContain("[store=memory, mTLS, lease-ttl=2000ms, fail=open]")
        const decision = yield* checkVia(cli.address, grpc.credentials.createSsl(ca, client.key, client.cert))
        expect(decision.allowed).toBe(true)
      })),
    { timeout: 120_000 }
  )
})
