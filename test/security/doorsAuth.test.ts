/**
 * The Monitor and Fleet doors' auth on the server as a user runs it (`throttlekit-effect serve` bound on
 * 0.0.0.0, reached through this machine's non-loopback address as a remote peer would): without a
 * secret, remote callers are refused and loopback callers served; with secrets, every caller (loopback
 * included) must present its door's own secret, as `x-*-secret` or `authorization: Bearer`; the
 * RateLimiter RPCs are not gated. And the secrets never show: not on the startup line, the warnings or
 * the shutdown lines, not in the refusals a client gets, not when the parsed options are printed.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Effect, Layer, Option, Redacted, Stream } from "effect"
import { inspect } from "node:util"
import * as FleetBackend from "../../src/clients/FleetBackend.js"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import { methodPath } from "../../src/grpc/codec.js"
import { Fleet as FleetRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import * as Cli from "../../src/server/Cli.js"
import { Fleet } from "../../src/services/Fleet.js"
import { Monitor } from "../../src/services/Monitor.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { nonLoopbackAddress } from "../fleet/support.js"
import { type ServerProcess, startServer, tempFile } from "../server/cliProcess.js"
import { rawClient, sendRaw } from "../support/rawWire.js"

const MONITOR_SECRET = "m0n-Secret-7f3a9c"
const FLEET_SECRET = "f1eet-Secret-b2e8d1"

const policyFile = tempFile(
  "doors.yaml",
  "limiters:\n  api:\n    strategy: fixedWindow\n    limit: 1000\n    windowMs: 60000\n    federated: {}\n"
)

const secretOf = (secret: string | undefined) => (secret === undefined ? {} : { secret: Redacted.make(secret) })

/** What each door answers a caller at `target` presenting the given secrets: "ok" or the error's tag. */
const probe = (target: string, secrets: { readonly monitor?: string; readonly fleet?: string } = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const monitor = Context.get(
      yield* Layer.build(MonitorBackend.layer({ target, ...secretOf(secrets.monitor) })),
      Monitor
    )
    const fleet = Context.get(yield* Layer.build(FleetBackend.layer({ target, ...secretOf(secrets.fleet) })), Fleet)
    const limiter = Context.get(yield* Layer.build(ServiceBackend.layer({ target })), RateLimiter)
    const outcome = <A, E extends { readonly _tag: string; readonly message: string }>(
      effect: Effect.Effect<A, E>
    ) =>
      Effect.match(effect, {
        onFailure: (error) => ({ answer: error._tag, message: error.message }),
        onSuccess: () => ({ answer: "ok", message: "" })
      })
    return {
      snapshot: yield* outcome(monitor.snapshot),
      // An authorised Watch stays open (no denials happen): still open after a while means served.
      watch: yield* outcome(Effect.timeoutOption(Stream.runDrain(monitor.watch()), "3 seconds")),
      reserve: yield* outcome(fleet.reserve("api", { wants: 1 })),
      check: yield* outcome(limiter.check("api", "k"))
    }
  }))

const answers = (result: Effect.Effect.Success<ReturnType<typeof probe>>) => ({
  snapshot: result.snapshot.answer,
  watch: result.watch.answer,
  reserve: result.reserve.answer,
  check: result.check.answer
})

/** A Fleet.Reserve with raw metadata (to present `authorization: Bearer …` exactly as given). */
const reserveWithHeader = (target: string, header: string, value: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* rawClient(target)
    const metadata = new grpc.Metadata()
    metadata.set(header, value)
    // ReserveRequest { policy: "api", wants: 1 }
    const body = Buffer.from([0x0a, 3, ...Buffer.from("api"), 0x18, 1])
    const answer = yield* sendRaw(client, methodPath(FleetRpc.method.reserve), body, { metadata })
    return answer.code
  }))

const loopbackTarget = (server: ServerProcess) => `127.0.0.1:${server.port}`

/** Everything the process printed, and the secrets it must not contain. */
const expectNoSecretIn = (text: string) => {
  expect(text).not.toContain(MONITOR_SECRET)
  expect(text).not.toContain(FLEET_SECRET)
}

describe("Monitor and Fleet auth, end to end", () => {
  it.live(
    "without secrets: remote callers are refused by both doors, loopback callers served; Check is open",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const remote = yield* nonLoopbackAddress
        const server = yield* startServer(["--config", policyFile, "--host", "0.0.0.0", "--port", "0"])
        const far = yield* probe(`${remote.address}:${server.port}`)
        const near = yield* probe(loopbackTarget(server))
        console.log(
          `[doors auth] remote peer via ${remote.address}: ${JSON.stringify(answers(far))}; loopback: ${
            JSON.stringify(answers(near))
          }`
        )
        expect(answers(far)).toEqual({
          snapshot: "Unauthenticated",
          watch: "Unauthenticated",
          reserve: "Unauthenticated",
          check: "ok"
        })
        expect(answers(near)).toEqual({ snapshot: "ok", watch: "ok", reserve: "ok", check: "ok" })
        // The server said so at startup.
        expect(server.output().stderr).toContain("Monitor, Fleet and Admin answer loopback callers only")
      })),
    { timeout: 180_000 }
  )

  it.live(
    "with secrets: every caller must present its door's own secret; the secrets are never printed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const remote = yield* nonLoopbackAddress
        const server = yield* startServer([
          "--config",
          policyFile,
          "--host",
          "0.0.0.0",
          "--port",
          "0",
          "--monitor-secret",
          MONITOR_SECRET,
          "--fleet-secret",
          FLEET_SECRET
        ])
        const near = loopbackTarget(server)
        const far = `${remote.address}:${server.port}`
        const results = {
          loopbackWithout: yield* probe(near),
          loopbackWrong: yield* probe(near, { monitor: `${MONITOR_SECRET}x`, fleet: FLEET_SECRET.slice(1) }),
          swapped: yield* probe(near, { monitor: FLEET_SECRET, fleet: MONITOR_SECRET }),
          remoteRight: yield* probe(far, { monitor: MONITOR_SECRET, fleet: FLEET_SECRET }),
          loopbackRight: yield* probe(near, { monitor: MONITOR_SECRET, fleet: FLEET_SECRET })
        }
        console.log(
          `[doors auth with secrets] ${
            JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, answers(v)])))
          }`
        )
        const refused = {
          snapshot: "Unauthenticated",
          watch: "Unauthenticated",
          reserve: "Unauthenticated",
          check: "ok"
        }
        const served = { snapshot: "ok", watch: "ok", reserve: "ok", check: "ok" }
        expect(answers(results.loopbackWithout)).toEqual(refused)
        expect(answers(results.loopbackWrong)).toEqual(refused)
        expect(answers(results.swapped)).toEqual(refused)
        expect(answers(results.remoteRight)).toEqual(served)
        expect(answers(results.loopbackRight)).toEqual(served)

        // Bearer, in any case of the word, is accepted; another door's secret as a Bearer is not.
        expect(yield* reserveWithHeader(far, "authorization", `Bearer ${FLEET_SECRET}`)).toBe(grpc.status.OK)
        expect(yield* reserveWithHeader(far, "authorization", `bEaReR ${FLEET_SECRET}`)).toBe(grpc.status.OK)
        expect(yield* reserveWithHeader(far, "authorization", `Bearer ${MONITOR_SECRET}`)).toBe(
          grpc.status.UNAUTHENTICATED
        )
        expect(yield* reserveWithHeader(far, "x-fleet-secret", `${FLEET_SECRET} `)).toBe(grpc.status.UNAUTHENTICATED)

        // No refusal echoes what was presented or what was expected.
        for (const result of Object.values(results)) {
          for (const call of Object.values(result)) expectNoSecretIn(call.message)
        }
        // Nothing the server printed, from its startup line to its shutdown, carries a secret.
        const ended = yield* server.stop
        expect(ended.code).toBe(0)
        expect(server.startupLine).toContain("listening on 0.0.0.0:")
        expectNoSecretIn(ended.stdout + ended.stderr)
      })),
    { timeout: 180_000 }
  )

  it.effect("the parsed secrets are Redacted: printing the options shows neither", () =>
    Effect.gen(function*() {
      const command = yield* Cli.load([
        "serve",
        "--config",
        "x.yaml",
        "--monitor-secret",
        MONITOR_SECRET,
        "--fleet-secret",
        FLEET_SECRET
      ]).pipe(Effect.provide(NodeFileSystem.layer))
      expect(command._tag).toBe("Serve")
      if (command._tag !== "Serve") return
      const args = command.args
      expect(Option.map(args.monitorSecret, Redacted.value)).toEqual(Option.some(MONITOR_SECRET))
      expect(Option.map(args.fleetSecret, Redacted.value)).toEqual(Option.some(FLEET_SECRET))
      for (
        const printed of [inspect(args, { depth: 10 }), JSON.stringify(args), String(args.monitorSecret), `${args}`]
      ) {
        expectNoSecretIn(printed)
      }
    }))
})
