/**
 * TLS files the server could not serve with are refused at startup, by the `serve` binary as a user runs
 * it: a garbage or empty `--tls-ca`, an expired or not-yet-valid certificate, a key of another
 * certificate, a damaged key, a CA bundle with nothing valid in it. Each exits 1 with one line naming the
 * flag and the path, never the file's content. `--tls-allow-not-yet-valid` starts anyway, with a warning
 * (and a client with a right clock indeed refuses that certificate). In process, `ThrottleKitServer.layer`
 * fails with a typed `TlsMaterialError`. Certificates are made at test time with `openssl`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import * as tls from "node:tls"
import * as PolicyFile from "../../src/PolicyFile.js"
import type { ServerTls } from "../../src/server/GrpcServer.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { type Certificates, certificates, datedServerCertificate } from "../support/tls.js"
import { runToEnd, startServer, tempFile } from "./cliProcess.js"

const POLICIES = "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n"
const policyFile = tempFile("tls-files.yaml", POLICIES)

/** Text that must never show in the output: the content of the bad files. */
const GARBAGE = "garbage-not-a-certificate-7f3a"

/** `serve` with `args` until it exits (a server that starts instead is stopped after 30 s: a failure). */
const serve = (args: ReadonlyArray<string>) =>
  runToEnd(process.execPath, [
    "--import",
    "tsx",
    "src/server/bin.ts",
    "serve",
    "--config",
    policyFile,
    "--port",
    "0",
    ...args
  ]).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => "the server started instead of refusing" }))

/** The CLI refused to start: exit 1, nothing on stdout, one line on stderr starting with `reason`. */
const expectRefused = (ended: { code: number | null; stdout: string; stderr: string }, reason: string) => {
  expect(ended.code).toBe(1)
  expect(ended.stdout).toBe("")
  const lines = ended.stderr.trimEnd().split("\n")
  expect(lines).toHaveLength(1)
  expect(lines[0]!.startsWith(`throttlekit-effect: ${reason}`)).toBe(true)
  expect(ended.stderr).not.toContain(GARBAGE)
  expect(ended.stderr).not.toContain("BEGIN")
}

/** A file in the certificates' directory holding `text`. */
const file = (certs: Certificates, name: string, text: string) => {
  const at = path.join(certs.dir, name)
  writeFileSync(at, text)
  return at
}

describe("TLS files are checked at startup", () => {
  it.live(
    "bad files: exit 1 with one line naming the flag and the path, never the content",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const certs = yield* certificates
        const expired = yield* datedServerCertificate(certs, "expired", "20200101000000Z", "20200102000000Z")
        const future = yield* datedServerCertificate(certs, "future", "20990101000000Z", "20990102000000Z")
        const garbageCa = file(certs, "garbage-ca.pem", `${GARBAGE}\n`)
        const emptyCa = file(certs, "empty-ca.pem", "")
        const brokenCa = file(
          certs,
          "broken-ca.pem",
          `-----BEGIN CERTIFICATE-----\n${GARBAGE}\n-----END CERTIFICATE-----\n`
        )
        const garbageKey = file(certs, "garbage.key", `${GARBAGE}\n`)
        // A CA bundle whose only certificate has expired: no client certificate could ever be verified.
        const expiredCa = file(certs, "expired-ca.pem", expired.cert.toString())
        const good = ["--tls-cert", certs.server.certPath, "--tls-key", certs.server.keyPath]

        const rows: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
          [[...good, "--tls-ca", garbageCa], `--tls-ca ${garbageCa}: holds no PEM certificate (empty, or not PEM)`],
          [[...good, "--tls-ca", emptyCa], `--tls-ca ${emptyCa}: holds no PEM certificate (empty, or not PEM)`],
          [[...good, "--tls-ca", brokenCa], `--tls-ca ${brokenCa}: its certificate cannot be parsed`],
          [
            [...good, "--tls-ca", expiredCa],
            `--tls-ca ${expiredCa}: no certificate in it is valid now (`
          ],
          [
            ["--tls-cert", expired.certPath, "--tls-key", expired.keyPath],
            `--tls-cert ${expired.certPath}: the certificate expired on 2020-01-02T00:00:00.000Z`
          ],
          [
            ["--tls-cert", future.certPath, "--tls-key", future.keyPath],
            `--tls-cert ${future.certPath}: the certificate is not valid until 2099-01-01T00:00:00.000Z (the clock says `
          ],
          [
            ["--tls-cert", certs.server.certPath, "--tls-key", certs.client.keyPath],
            `--tls-key ${certs.client.keyPath}: does not match the certificate (it is the key of another certificate)`
          ],
          [
            ["--tls-cert", certs.server.certPath, "--tls-key", garbageKey],
            `--tls-key ${garbageKey}: holds no usable PEM private key (empty, not PEM, or damaged)`
          ]
        ]
        const ended = yield* Effect.forEach(rows, ([args]) => serve(args), { concurrency: 2 })
        ended.forEach((result, i) => expectRefused(result, rows[i]![1]))
        // The not-yet-valid refusal says how to start anyway.
        expect(ended[5]!.stderr).toContain("; pass --tls-allow-not-yet-valid to start anyway")
      })),
    { timeout: 240_000 }
  )

  it.live(
    "--tls-allow-not-yet-valid starts with a warning; a client with a right clock refuses the certificate",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const certs = yield* certificates
        const future = yield* datedServerCertificate(certs, "future", "20990101000000Z", "20990102000000Z")
        const server = yield* startServer([
          "--config",
          policyFile,
          "--port",
          "0",
          "--tls-cert",
          future.certPath,
          "--tls-key",
          future.keyPath,
          "--tls-allow-not-yet-valid"
        ])
        expect(server.startupLine).toContain(", TLS,")
        yield* Effect.sleep("200 millis")
        expect(server.output().stderr).toMatch(
          /^warning: TLS the certificate is not valid until 2099-01-01T00:00:00\.000Z \(the clock says .*\): clients with a right clock refuse it until then$/m
        )
        const refused = yield* Effect.async<string>((resume) => {
          const socket = tls.connect({
            host: "127.0.0.1",
            port: server.port,
            ca: certs.ca.cert,
            servername: "localhost",
            ALPNProtocols: ["h2"]
          })
          socket.once("secureConnect", () => resume(Effect.succeed("secure")))
          socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? error.message)))
          return Effect.sync(() => socket.destroy())
        })
        expect(refused).toBe("CERT_NOT_YET_VALID")
      })),
    { timeout: 120_000 }
  )

  it.live(
    "in process: ThrottleKitServer.layer fails with a typed TlsMaterialError",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const certs = yield* certificates
        const expired = yield* datedServerCertificate(certs, "expired", "20200101000000Z", "20200102000000Z")
        const policies = yield* PolicyFile.parse(POLICIES)
        const start = (tlsMaterial: ServerTls) =>
          Effect.exit(Layer.build(ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, tls: tlsMaterial })))
        const failures = {
          expired: yield* start({ cert: expired.cert, key: expired.key }),
          mismatch: yield* start({ cert: certs.server.cert, key: certs.rogueCa.key }),
          emptyCa: yield* start({ ...certs.server, ca: Buffer.alloc(0) })
        }
        for (const [name, exit] of Object.entries(failures)) {
          expect([name, Exit.isFailure(exit)]).toEqual([name, true])
        }
        const errorOf = (exit: Exit.Exit<unknown, ThrottleKitServer.ThrottleKitServerError>) =>
          Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(errorOf(failures.expired)).toMatchObject({ _tag: "TlsMaterialError", part: "cert", problem: "expired" })
        expect(errorOf(failures.mismatch)).toMatchObject({ _tag: "TlsMaterialError", part: "key", problem: "mismatch" })
        expect(errorOf(failures.emptyCa)).toMatchObject({ _tag: "TlsMaterialError", part: "ca", problem: "unusable" })
        expect(errorOf(failures.expired)?.message).toBe(
          "bad TLS certificate: the certificate expired on 2020-01-02T00:00:00.000Z"
        )
        // Good material starts.
        expect(Exit.isSuccess(yield* start({ ...certs.server, ca: certs.ca.cert }))).toBe(true)
      })),
    { timeout: 60_000 }
  )
})
