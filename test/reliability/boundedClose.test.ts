/**
 * Every close is bounded, whatever Redis does: with the private `redis-server` frozen (SIGSTOP: the
 * connection stays open, nothing is answered), a `RedisBackend` scope holding an admission with a call in
 * flight closes within its bound, and the server binary with `--store redis` exits within
 * `--shutdown-timeout-ms` plus 1 s after SIGTERM. Redis is always thawed (SIGCONT) in a finalizer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Logger, LogLevel, Scope } from "effect"
import { Redis } from "ioredis"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { startServer, tempFile } from "../server/cliProcess.js"
import { redisServer } from "../support/redisServer.js"
import { fixedWindow, pool } from "./support.js"

/** The bound on every Redis call. */
const TIMEOUT_MS = 250
/** The slack the issue allows over a bound. */
const SLACK_MS = 1000

/** Freezes the Redis process until the scope closes (thawed in a finalizer, whatever happens). */
const frozen = (pid: number) =>
  Effect.acquireRelease(
    Effect.sync(() => process.kill(pid, "SIGSTOP")),
    () => Effect.sync(() => process.kill(pid, "SIGCONT"))
  )

describe("bounded close while Redis is frozen (SIGSTOP)", () => {
  it.live(
    "a RedisBackend scope with a held admission and a call in flight closes within timeoutMs + 1 s",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const pid = yield* redisPid(redis.url)
        const slots = pool("slots", 2)
        const window = fixedWindow("window", 1_000_000, 3_600_000)
        const backendScope = yield* Scope.make()
        // If the close under test hangs, the test's own scope still ends it (after the thaw below).
        yield* Effect.addFinalizer(() => Scope.close(backendScope, Exit.void).pipe(Effect.forkDaemon))
        const context = yield* Layer.buildWithScope(
          RedisBackend.layer({ policies: [slots, window], redis: redis.url, timeoutMs: TIMEOUT_MS }),
          backendScope
        )
        const limiter = Context.get(context, RateLimiter)
        // An admission held for the life of the backend scope: its release (a Redis call) runs at close.
        const admission = yield* Scope.extend(limiter.admit(slots.name, "holder"), backendScope)
        expect(admission.held).toBe(true)

        yield* frozen(pid)
        // A call in flight when the close starts, and another one started just after.
        const inFlight = yield* Effect.fork(limiter.check(window.name, "k"))
        yield* Effect.sleep("20 millis")
        const started = performance.now()
        yield* Scope.close(backendScope, Exit.void)
        const closeMs = performance.now() - started
        const late = yield* limiter.check(window.name, "k").pipe(Effect.either)
        yield* Fiber.await(inFlight)
        console.log(`[bounded close] RedisBackend scope closed in ${closeMs.toFixed(0)} ms with Redis frozen`)
        expect(closeMs).toBeLessThan(TIMEOUT_MS + SLACK_MS)
        expect(late._tag).toBe("Left")
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 60_000 }
  )

  it.live(
    "the server binary with --store redis exits within --shutdown-timeout-ms + 1 s after SIGTERM",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const pid = yield* redisPid(redis.url)
        const policyFile = tempFile(
          "bounded-close.yaml",
          "limiters:\n  api:\n    strategy: gcra\n    limit: 100\n    period: 1h\n    burst: 100\n" +
            "  pool:\n    concurrency:\n      algorithm: fixed\n      minLimit: 3\n      maxLimit: 3\n"
        )
        for (const shutdownTimeoutMs of [300, 1500]) {
          const server = yield* startServer([
            "--config",
            policyFile,
            "--port",
            "0",
            "--store",
            "redis",
            "--redis",
            redis.url,
            "--shutdown-timeout-ms",
            String(shutdownTimeoutMs)
          ])
          // A client of the server holding an admission (a lease in Redis), and a check in flight once
          // Redis is frozen: the drain, the handlers and the store close all face an unresponsive Redis.
          const clientScope = yield* Scope.make()
          yield* Effect.addFinalizer(() => Scope.close(clientScope, Exit.void).pipe(Effect.forkDaemon))
          const client = Context.get(
            yield* Layer.buildWithScope(ServiceBackend.layer({ target: server.address }), clientScope),
            RateLimiter
          )
          const admission = yield* Scope.extend(client.admit("pool", "holder"), clientScope)
          expect(admission.held).toBe(true)
          const ended = yield* Effect.scoped(Effect.gen(function*() {
            yield* frozen(pid)
            yield* Effect.forkIn(client.check("api", "k").pipe(Effect.either), clientScope)
            yield* Effect.sleep("50 millis")
            const started = performance.now()
            const ended = yield* server.stop
            return { ...ended, ms: performance.now() - started }
          }))
          console.log(
            `[bounded close] server (--shutdown-timeout-ms ${shutdownTimeoutMs}) exited in ${
              ended.ms.toFixed(0)
            } ms with Redis frozen (code ${ended.code}, signal ${ended.signal})`
          )
          expect(ended.ms).toBeLessThan(shutdownTimeoutMs + SLACK_MS)
          expect(ended.code).toBe(0)
        }
      })).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.None))),
    { timeout: 120_000 }
  )
})

/** The pid of the Redis process behind `url` (asked over a connection of the test's own). */
const redisPid = (url: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1 })),
    (client) =>
      Effect.tryPromise(() => client.info("server")).pipe(
        Effect.map((info) => Number(/process_id:(\d+)/.exec(info)?.[1])),
        Effect.tap((pid) => expect(pid).toBeGreaterThan(0))
      ),
    (client) => Effect.sync(() => client.disconnect())
  )
