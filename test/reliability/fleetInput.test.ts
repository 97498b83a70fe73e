/**
 * Bad input to Fleet.Reserve, table-driven, through the `FleetBackend` client to our server as `serve`
 * builds it (`ThrottleKitServer.layer` over a Redis store, so the coordinator is Redis's): each row
 * asserts the typed error AND that no state changed (the whole Redis keyspace, and afterwards a reserve of
 * the whole budget is still granted in full). Then random bytes as Reserve and GetSnapshot bodies: the
 * server answers each with a status, logs no defect, and keeps serving.
 */
import { describe, expect, layer } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Cause, Context, Effect, Layer, Option, Redacted } from "effect"
import * as fc from "fast-check"
import * as FleetBackend from "../../src/clients/FleetBackend.js"
import { methodPath } from "../../src/grpc/codec.js"
import { Fleet as FleetRpc, Monitor as MonitorRpc } from "../../src/grpc/generated/throttlekit_pb.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import { GrpcServer } from "../../src/server/GrpcServer.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { Fleet, type FleetService, type ReserveOptions } from "../../src/services/Fleet.js"
import { MAX_KEY_BYTES } from "../../src/Validate.js"
import { errorRecorder, keyspaceReader, rawClient, sendRaw } from "../support/rawWire.js"
import { redisServer } from "../support/redisServer.js"

const LIMIT = 50
// 30-day windows: each row compares the keyspace before and after a call on the real clock, and the keys
// of an hour's window expire at the top of the hour.
const config = `
limiters:
  fleet:
    strategy: fixedWindow
    limit: ${LIMIT}
    windowMs: 2592000000
    federated: {}
  local:
    strategy: fixedWindow
    limit: 5
    windowMs: 2592000000
`

interface Rig {
  readonly fleet: FleetService
  readonly raw: grpc.Client
  readonly keyspace: Effect.Effect<string>
  readonly errors: Array<string>
}

class FleetRig extends Context.Tag("test/FleetRig")<FleetRig, Rig>() {}

const rig = Layer.scoped(
  FleetRig,
  Effect.gen(function*() {
    const redis = yield* redisServer
    const policies = yield* PolicyFile.parse(config, "fleet.yaml")
    const errors: Array<string> = []
    const context = yield* Layer.build(
      ThrottleKitServer.layer({
        policies,
        store: { kind: "redis", redis: redis.url },
        fleetSecret: Redacted.make("fleet-key"),
        nodeId: "fleet-input",
        host: "127.0.0.1",
        port: 0
      }).pipe(Layer.provide(errorRecorder(errors)))
    )
    const address = Context.get(context, GrpcServer).address
    const fleet = Context.get(
      yield* Layer.build(
        FleetBackend.layer({ target: address, secret: Redacted.make("fleet-key"), deadlineMs: 10_000 })
      ),
      Fleet
    )
    const raw = yield* rawClient(address)
    const keyspace = yield* keyspaceReader(redis.url)
    return { fleet, raw, keyspace, errors }
  }).pipe(Effect.orDie)
)

interface Row {
  readonly name: string
  readonly policy: string
  readonly options: ReserveOptions
  readonly error: string
  readonly argument?: string
}

const badWants: ReadonlyArray<readonly [string, number]> = [
  ["negative", -1],
  ["zero", 0],
  ["NaN", Number.NaN],
  ["infinite", Number.POSITIVE_INFINITY],
  ["fractional", 2.5],
  ["2^53", 2 ** 53]
]

const badDomains: ReadonlyArray<readonly [string, string]> = [
  ["1 MiB", "d".repeat(1 << 20)],
  ["one byte over the key cap", "d".repeat(MAX_KEY_BYTES + 1)],
  ["a lone surrogate (not encodable as UTF-8)", "tenant-\uD800"],
  ["a reversed surrogate pair", "\uDC00\uD800"]
]

const rows: ReadonlyArray<Row> = [
  ...badWants.map(([label, wants]): Row => ({
    name: `${label} wants`,
    policy: "fleet",
    options: { wants },
    error: "InvalidArgument",
    argument: "wants"
  })),
  ...badDomains.map(([label, domain]): Row => ({
    name: `a domain: ${label}`,
    policy: "fleet",
    options: { domain },
    error: "InvalidArgument",
    argument: "domain"
  })),
  { name: "an unknown policy", policy: "nope", options: {}, error: "PolicyNotFound" },
  { name: "a policy that is not federated", policy: "local", options: {}, error: "PolicyNotFound" },
  { name: "the empty policy name", policy: "", options: {}, error: "PolicyNotFound" },
  { name: "the concurrency axis", policy: "fleet", options: { axis: "concurrency" }, error: "OperationNotSupported" }
]

describe("bad input to Fleet.Reserve changes nothing", () => {
  layer(rig, { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect.each(rows)("$name", (row) =>
      Effect.gen(function*() {
        const { fleet, keyspace } = yield* FleetRig
        const domain = `row-${row.name}`
        const before = yield* keyspace
        const exit = yield* Effect.exit(fleet.reserve(row.policy, { domain, ...row.options }))
        expect(exit._tag).toBe("Failure")
        if (exit._tag === "Failure") {
          const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
          expect(failure?._tag, String(exit.cause).slice(0, 300)).toBe(row.error)
          if (failure?._tag === "InvalidArgument" && row.argument !== undefined) {
            expect(failure.argument).toBe(row.argument)
          }
        }
        expect(yield* keyspace).toBe(before)
        // The row's own domain still has its whole budget.
        const lease = yield* fleet.reserve("fleet", { domain, wants: LIMIT })
        expect(lease.capacity).toBe(LIMIT)
      }))

    it.effect(
      "fuzz: random bytes as Reserve and GetSnapshot bodies are answered with a status; still serving",
      () =>
        Effect.gen(function*() {
          const { errors, fleet, raw } = yield* FleetRig
          const paths = [methodPath(FleetRpc.method.reserve), methodPath(MonitorRpc.method.getSnapshot)]
          const seen = new Map<string, number>()
          const metadata = new grpc.Metadata()
          metadata.set("x-fleet-secret", "fleet-key")
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(fc.constantFrom(...paths), fc.uint8Array({ maxLength: 256 }), async (path, bytes) => {
                const { code } = await Effect.runPromise(
                  sendRaw(raw, path, Buffer.from(bytes), { metadata: metadata.clone() })
                )
                const name = `${path.split("/").pop()} ${grpc.status[code]}`
                seen.set(name, (seen.get(name) ?? 0) + 1)
                expect([grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE, grpc.status.UNKNOWN]).not.toContain(
                  code
                )
              }),
              { numRuns: 300 }
            )
          )
          console.log(`[wire fuzz] Fleet/Monitor bodies: ${JSON.stringify(Object.fromEntries(seen))}`)
          expect(errors).toEqual([])
          expect((yield* fleet.reserve("fleet", { domain: "after-fuzz" })).capacity).toBe(1)
        }),
      { timeout: 120_000 }
    )
  })
})
