/**
 * A hostile or broken Monitor server: the `MonitorBackend` client decodes whatever comes back into a
 * typed error (or, for another server's `raw_json`, keeps the text), never a defect. A stand-in server
 * (our server never sends these) answers GetSnapshot with each row's `raw_json` or typed fields, and
 * Watch with an event-less message. Each row asserts the typed error, that its message stays short (a
 * 1 MiB payload is not echoed into logs), and that nothing in the payload reached `Object.prototype`.
 */
import type { MessageInitShape } from "@bufbuild/protobuf"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, Stream } from "effect"
import * as MonitorBackend from "../../src/clients/MonitorBackend.js"
import {
  type GetSnapshotResponseSchema,
  Monitor as MonitorDescriptor
} from "../../src/grpc/generated/throttlekit_pb.js"
import { LENS_VERSION } from "../../src/monitor/Snapshot.js"
import * as GrpcServer from "../../src/server/GrpcServer.js"
import { implement } from "../../src/server/Service.js"
import { Monitor, type MonitorService } from "../../src/services/Monitor.js"

type Response = MessageInitShape<typeof GetSnapshotResponseSchema>

const deepArray = (depth: number) => "[".repeat(depth) + "]".repeat(depth)
const deepObject = (depth: number) => "{\"a\":".repeat(depth) + "1" + "}".repeat(depth)

const rawRows: ReadonlyArray<readonly [string, string]> = [
  ["empty", ""],
  ["whitespace", "  \n\t "],
  ["null", "null"],
  ["a number", "42"],
  ["a string", "\"snapshot\""],
  ["an array", "[]"],
  ["an empty object", "{}"],
  ["truncated", "{\"meta\": 42"],
  ["the wrong shape", "{\"meta\": 42}"],
  ["NaN and comments", "{\"meta\": NaN /* no */}"],
  ["a lone surrogate escape", "\"\\ud800\""],
  ["a __proto__ key", "{\"__proto__\": {\"polluted\": true}, \"constructor\": {\"prototype\": {\"polluted\": true}}}"],
  ["arrays nested 100 000 deep", deepArray(100_000)],
  ["objects nested 20 000 deep", deepObject(20_000)],
  ["a field nested 50 000 deep", `{"meta":${deepArray(50_000)}}`],
  ["1 MiB of junk", "x".repeat(1 << 20)],
  ["a 1 MiB string where an object belongs", `{"meta": "${"x".repeat(1 << 20)}"}`]
]

interface Stage {
  next: Response
}

class StandIn
  extends Context.Tag("test/StandIn")<StandIn, { readonly stage: Stage; readonly monitor: MonitorService }>()
{}

const standIn = Layer.scoped(
  StandIn,
  Effect.gen(function*() {
    const stage: Stage = { next: {} }
    const service = implement(MonitorDescriptor, {
      getSnapshot: () => Effect.sync(() => stage.next),
      // A message without its event, then the end.
      watch: () => Stream.make({})
    })
    const running = yield* GrpcServer.make({ host: "127.0.0.1", port: 0 }, [service])
    const monitor = Context.get(yield* Layer.build(MonitorBackend.layer({ target: running.address })), Monitor)
    return { stage, monitor }
  }).pipe(Effect.orDie)
)

/** A snapshot from a server naming itself by `lensVersion`, whose `raw_json` is `rawJson`. */
const snapshotFrom = (lensVersion: string, rawJson: string): Response => ({
  snapshot: { meta: { mode: "process", lensVersion }, rawJson }
})

/** Text that is not JSON: an error from any server. */
const notJson = new Set(["empty", "whitespace", "truncated", "NaN and comments", "1 MiB of junk"])

type Row = { readonly name: string; readonly response: Response; readonly decodes: boolean }

const rows: ReadonlyArray<Row> = [
  // From a throttlekit-effect server, raw_json must be our snapshot: every row is an error.
  ...rawRows.map(([name, raw]): Row => ({
    name: `ours: ${name}`,
    response: snapshotFrom(LENS_VERSION, raw),
    decodes: false
  })),
  // From another server (the reference's own shape), JSON is kept as text; only non-JSON is an error.
  ...rawRows.map(([name, raw]): Row => ({
    name: `another server's: ${name}`,
    response: snapshotFrom("0.2.0-experimental.0", raw),
    decodes: !notJson.has(name)
  })),
  { name: "no snapshot at all", response: {}, decodes: false },
  {
    name: "an unknown policy kind",
    response: { snapshot: { meta: { mode: "process" }, policies: [{ name: "p", kind: "bogus" }], rawJson: "{}" } },
    decodes: false
  },
  {
    name: "an unknown mode",
    response: { snapshot: { meta: { mode: "cluster-of-one" }, rawJson: "{}" } },
    decodes: false
  }
]

describe("a broken Monitor server is a typed error, never a defect", () => {
  layer(standIn, { excludeTestServices: true, timeout: 60_000 })((it) => {
    it.effect.each(rows)("$name", ({ decodes, response }) =>
      Effect.gen(function*() {
        const { monitor, stage } = yield* StandIn
        stage.next = response
        const exit = yield* Effect.exit(monitor.snapshot)
        if (decodes) {
          expect(exit._tag, exit._tag === "Failure" ? String(exit.cause).slice(0, 300) : "").toBe("Success")
          if (exit._tag === "Success") {
            expect(Option.isNone(exit.value.raw)).toBe(true)
            expect(exit.value.rawJson).toBe(response.snapshot?.rawJson)
          }
        } else {
          expect(exit._tag).toBe("Failure")
          if (exit._tag === "Failure") {
            expect(exit.cause._tag, String(exit.cause).slice(0, 300)).toBe("Fail")
            if (exit.cause._tag === "Fail") {
              expect(exit.cause.error._tag).toBe("SnapshotDecodeError")
              expect(exit.cause.error.message.length).toBeLessThan(4096)
            }
          }
        }
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
      }))

    it.effect("a Watch message without its event is a typed error", () =>
      Effect.gen(function*() {
        const { monitor } = yield* StandIn
        const exit = yield* Effect.exit(Stream.runDrain(monitor.watch()))
        expect(exit._tag).toBe("Failure")
        if (exit._tag === "Failure") {
          expect(exit.cause._tag).toBe("Fail")
          if (exit.cause._tag === "Fail") expect(exit.cause.error._tag).toBe("BackendError")
        }
      }))
  })
})
