/**
 * Who may call the Monitor and Fleet doors: the loopback peer forms grpc-js reports (and the ones the
 * reference accepts), and the secret as x-*-secret or a Bearer token in any case, compared whole.
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect, Exit, Option, Redacted } from "effect"
import { authorize, isLoopbackPeer, presentedSecrets } from "../../src/server/Auth.js"

describe("Auth", () => {
  it("recognises loopback peers in every form", () => {
    for (
      const peer of [
        "127.0.0.1:5000",
        "ipv4:127.0.0.1:5000",
        "127.8.9.10:1",
        "[::1]:5000",
        "ipv6:[::1]:5000",
        "::1",
        "[::ffff:127.0.0.1]:80",
        "::ffff:127.0.0.1",
        "localhost:50051",
        "unix:/tmp/sock",
        "127.0.0.1"
      ]
    ) expect([peer, isLoopbackPeer(peer)]).toEqual([peer, true])
    for (
      const peer of [
        "192.0.2.2:5000",
        "ipv4:10.0.0.1:80",
        "[fd00::2]:5000",
        "[::ffff:10.0.0.1]:80",
        "128.0.0.1:1",
        "localhost.evil.example:1",
        "127.0.0.1.evil.example:1",
        ""
      ]
    ) expect([peer, isLoopbackPeer(peer)]).toEqual([peer, false])
  })

  it("reads the door header and a Bearer token of any case", () => {
    const metadata = new grpc.Metadata()
    metadata.set("x-fleet-secret", "a")
    metadata.set("authorization", "BEARER b")
    expect(presentedSecrets(metadata, "x-fleet-secret")).toEqual(["a", "b"])
    const basic = new grpc.Metadata()
    basic.set("authorization", "Basic Yjpj")
    expect(presentedSecrets(basic, "x-fleet-secret")).toEqual([])
  })

  it.effect("with a secret, only a caller presenting it exactly passes, loopback or not", () =>
    Effect.gen(function*() {
      const auth = { door: "Fleet", header: "x-fleet-secret", secret: Option.some(Redacted.make("s3cret")) }
      const call = (peer: string, header?: string, value?: string) => {
        const metadata = new grpc.Metadata()
        if (header !== undefined && value !== undefined) metadata.set(header, value)
        return Effect.exit(authorize(auth, { peer, metadata }))
      }
      expect(Exit.isSuccess(yield* call("192.0.2.9:1", "x-fleet-secret", "s3cret"))).toBe(true)
      expect(Exit.isSuccess(yield* call("127.0.0.1:1", "authorization", "bearer s3cret"))).toBe(true)
      for (
        const [header, value] of [[undefined, undefined], ["x-fleet-secret", "s3cre"], ["x-fleet-secret", "s3cret "], [
          "x-monitor-secret",
          "s3cret"
        ]] as const
      ) {
        const exit = yield* call("127.0.0.1:1", header, value)
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).not.toContain("s3cre")
      }
      const open = { door: "Monitor", header: "x-monitor-secret", secret: Option.none() }
      expect(Exit.isSuccess(yield* Effect.exit(authorize(open, { peer: "[::1]:3", metadata: new grpc.Metadata() }))))
        .toBe(true)
      const remote = yield* Effect.flip(authorize(open, { peer: "192.0.2.9:3", metadata: new grpc.Metadata() }))
      expect(remote.code).toBe(grpc.status.UNAUTHENTICATED)
    }))
})
