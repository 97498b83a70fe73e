/**
 * Live reload of `throttlekit-effect serve` (issue 19): the real server process, a real config file
 * rewritten on disk, a real SIGHUP, and real gRPC calls through `ServiceBackend`. On the Memory store and
 * on a real `redis-server`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { writeFileSync } from "node:fs"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { redisServer } from "../support/redisServer.js"
import { CliFailure, type ServerProcess, startServer, tempFile } from "./cliProcess.js"

const gcra = (limit: number) => `    strategy: gcra\n    limit: ${limit}\n    period: 1h\n    burst: ${limit}\n`
// 30 days: the test counts one key's window across reloads that take seconds, so no window may roll over
// in the middle (an hour-long one did, at 01:00:00).
const fixedWindow = (limit: number) => `    strategy: fixedWindow\n    limit: ${limit}\n    windowMs: 2592000000\n`
const pool = (limit: number) =>
  `    concurrency:\n      algorithm: fixed\n      minLimit: ${limit}\n      maxLimit: ${limit}\n`

/** The startup config: `kept` stays as it is, `changed` gets a new limit, `gone` is removed. */
const before = `limiters:\n  kept:\n${gcra(2)}  changed:\n${fixedWindow(2)}  gone:\n${gcra(5)}  slots:\n${pool(1)}`
/** The reloaded config: `kept` identical (keys reordered), `changed` limit 5, `gone` removed, `added` new. */
const after = `limiters:\n  changed:\n${fixedWindow(5)}  kept:\n${gcra(2)}  added:\n${gcra(3)}  slots:\n${pool(2)}`
/** A file that does not validate: the whole reload is refused. */
const broken = `limiters:\n  kept:\n${gcra(2)}  added:\n    strategy: gcra\n    limit: -1\n    period: 1h\n`
/** A valid file this server cannot take without a restart (the Fleet door was not started). */
const needsRestart =
  `limiters:\n  kept:\n${gcra(2)}  fleet:\n    strategy: fixedWindow\n    limit: 10\n    windowMs: 60000\n` +
  `    federated:\n      batch: 2\n`

/** Runs `program` against `server` through a fresh ServiceBackend. */
const via = <A, E>(server: ServerProcess, program: Effect.Effect<A, E, RateLimiter>) =>
  Effect.provide(program, ServiceBackend.layer({ target: server.address, deadline: "5 seconds" }))

/** The lines `server` printed on `stream` that contain `text`. */
const linesWith = (server: ServerProcess, stream: "stdout" | "stderr", text: string) =>
  server.output()[stream].split("\n").filter((line) => line.includes(text))

/** Waits (bounded) until `server` has printed `count` lines containing `text` on `stream`. */
const awaitLines = (server: ServerProcess, stream: "stdout" | "stderr", text: string, count: number) =>
  Effect.suspend(() =>
    linesWith(server, stream, text).length >= count
      ? Effect.succeed(linesWith(server, stream, text))
      : Effect.fail(new CliFailure({ reason: `no ${count}th line with ${JSON.stringify(text)} yet` }))
  ).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(50)).pipe(Schedule.upTo(Duration.seconds(30)))),
    Effect.mapError((error) => new CliFailure({ reason: `${error.reason}: ${JSON.stringify(server.output())}` }))
  )

/** Rewrites the config at `path` and sends the server SIGHUP. */
const rewriteAndHangUp = (server: ServerProcess, path: string, text: string) =>
  Effect.sync(() => {
    writeFileSync(path, text)
    server.child.kill("SIGHUP")
  })

/** The whole scenario, on the server started with `storeArgs`. */
const scenario = (storeArgs: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const config = tempFile("policies.yaml", before)
    const server = yield* startServer(["--config", config, "--port", "0", ...storeArgs])
    const key = `k-${randomUUID()}`

    // Before: `kept` and `changed` drained to remaining 0 for `key`; a slot of `slots` held.
    const drained = yield* via(
      server,
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const kept = yield* Effect.forEach([1, 2, 3], () => limiter.check("kept", key))
        const changed = yield* Effect.forEach([1, 2, 3], () => limiter.check("changed", key))
        const held = yield* limiter.leases.acquire("slots", key)
        return { kept, changed, held }
      })
    )
    expect(drained.kept.map((d) => [d.allowed, d.remaining])).toEqual([[true, 1], [true, 0], [false, 0]])
    expect(drained.changed.map((d) => [d.allowed, d.remaining])).toEqual([[true, 1], [true, 0], [false, 0]])
    expect(drained.held.held).toBe(true)

    // SIGHUP with the new file: one line, naming what changed.
    yield* rewriteAndHangUp(server, config, after)
    const applied = yield* awaitLines(server, "stdout", "reloaded", 1)
    expect(applied).toEqual([
      `throttlekit-effect reloaded ${config}: 4 policies (2 changed: changed, slots; 1 added: added; 1 removed: gone; 1 unchanged)`
    ])

    const afterReload = yield* via(
      server,
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        return {
          kept: yield* limiter.check("kept", key),
          keptPeek: yield* limiter.peek("kept", key),
          changed: yield* limiter.check("changed", key),
          added: yield* limiter.check("added", key),
          gone: yield* Effect.either(limiter.check("gone", key)),
          // The old slot is still held on the old definition and comes back through Release.
          released: yield* Effect.either(limiter.leases.release(drained.held.leaseId, false)),
          slots: yield* Effect.forEach([1, 2, 3], () => limiter.leases.acquire("slots", `${key}-new`))
        }
      })
    )
    // The unchanged policy kept its state: the key at remaining 0 stays at 0.
    expect([afterReload.kept.allowed, afterReload.kept.remaining]).toEqual([false, 0])
    expect(afterReload.keptPeek.remaining).toBe(0)
    // The changed limit applies to the next call.
    expect(afterReload.changed.limit).toBe(5)
    expect(afterReload.changed.allowed).toBe(true)
    expect([afterReload.added.allowed, afterReload.added.limit, afterReload.added.remaining]).toEqual([true, 3, 2])
    expect(Either.isLeft(afterReload.gone) && afterReload.gone.left._tag).toBe("PolicyNotFound")
    expect(Either.isRight(afterReload.released)).toBe(true)
    expect(afterReload.slots.map((a) => a.held)).toEqual([true, true, false])

    // A broken file: one line on stderr, nothing changed.
    const stdoutBefore = server.output().stdout
    yield* rewriteAndHangUp(server, config, broken)
    const refused = yield* awaitLines(server, "stderr", "refused", 1)
    expect(refused).toHaveLength(1)
    expect(refused[0]).toContain(
      `throttlekit-effect reload of ${config} refused, nothing changed: limiters.added.limit`
    )
    // A valid file the server cannot take without a restart: refused the same way.
    yield* rewriteAndHangUp(server, config, needsRestart)
    const refusedAgain = yield* awaitLines(server, "stderr", "refused", 2)
    expect(refusedAgain[1]).toContain("needs the Fleet door")
    expect(refusedAgain[1]).toContain("restart the server")
    expect(server.output().stdout).toBe(stdoutBefore)

    const afterRefusals = yield* via(
      server,
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        return {
          kept: yield* limiter.check("kept", key),
          changed: yield* limiter.check("changed", key),
          added: yield* limiter.check("added", key),
          gone: yield* Effect.either(limiter.check("gone", key)),
          fleet: yield* Effect.either(limiter.check("fleet", key))
        }
      })
    )
    expect([afterRefusals.kept.allowed, afterRefusals.kept.remaining]).toEqual([false, 0])
    expect([afterRefusals.changed.limit, afterRefusals.changed.remaining]).toEqual([
      5,
      afterReload.changed.remaining - 1
    ])
    expect([afterRefusals.added.limit, afterRefusals.added.remaining]).toEqual([3, 1])
    expect(Either.isLeft(afterRefusals.gone) && afterRefusals.gone.left._tag).toBe("PolicyNotFound")
    expect(Either.isLeft(afterRefusals.fleet) && afterRefusals.fleet.left._tag).toBe("PolicyNotFound")

    // The server still shuts down cleanly (the SIGHUP listener is released with it).
    const ended = yield* server.stop
    expect(ended.code).toBe(0)
    expect(ended.stdout).toContain("throttlekit-effect stopped")
    return { afterReload }
  })

describe("serve: live reload on SIGHUP", () => {
  it.live(
    "memory: an unchanged policy keeps its state, a changed limit applies at once, added / removed follow; a bad file changes nothing",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { afterReload } = yield* scenario(["--store", "memory"])
        // Memory: a changed definition starts from fresh state (the key had drained the old limit of 2).
        expect(afterReload.changed.remaining).toBe(4)
      })),
    { timeout: 120_000 }
  )

  it.live(
    "redis: the same, the state staying in Redis",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const { afterReload } = yield* scenario(["--store", "redis", "--redis", redis.url])
        // Redis: the key's state is the one at `changed:key` (2 spent in this window): the new limit reads it.
        expect(afterReload.changed.remaining).toBe(2)
      })),
    { timeout: 180_000 }
  )

  it.live(
    "--watch-config: a change to the file on disk reloads it, without a signal",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const config = tempFile("policies.yaml", before)
        const server = yield* startServer(["--config", config, "--port", "0", "--watch-config"])
        const key = `w-${randomUUID()}`
        const drained = yield* via(
          server,
          Effect.flatMap(RateLimiter, (l) => Effect.forEach([1, 2], () => l.check("kept", key)))
        )
        expect(drained.map((d) => d.remaining)).toEqual([1, 0])
        yield* Effect.sync(() => writeFileSync(config, after))
        const applied = yield* awaitLines(server, "stdout", "reloaded", 1)
        expect(applied[0]).toContain("1 added: added")
        const answers = yield* via(
          server,
          Effect.gen(function*() {
            const limiter = yield* RateLimiter
            return { kept: yield* limiter.check("kept", key), added: yield* limiter.check("added", key) }
          })
        )
        expect([answers.kept.allowed, answers.kept.remaining]).toEqual([false, 0])
        expect(answers.added.allowed).toBe(true)
        yield* Effect.sync(() => writeFileSync(config, broken))
        const refused = yield* awaitLines(server, "stderr", "refused", 1)
        expect(refused[0]).toContain("limiters.added.limit")
        expect(linesWith(server, "stdout", "reloaded")).toHaveLength(1)
      })),
    { timeout: 120_000 }
  )
})
