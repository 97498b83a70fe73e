/**
 * A Redis URL may hold a password: it is accepted `Redacted` (directly and through `layerConfig`), and no
 * failure we raise prints it — not a refused login on the real server, not a port where nothing listens,
 * not a URL ioredis cannot parse (typed, not a defect) — in its message, its JSON, its `Cause`, or a log.
 * And the connection's own `layerConfig`s (RedisClient, RedisCoordinator).
 */
import { describe, expect, layer, vi } from "@effect/vitest"
import { Cause, Config, ConfigError, Effect, Layer, Logger, Redacted } from "effect"
import { Coordinator } from "../../src/coordinator/Coordinator.js"
import * as RedisCoordinator from "../../src/coordinator/RedisCoordinator.js"
import type { WindowedStrategy } from "../../src/coordinator/reserve.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { Policy } from "../../src/Policy.js"
import * as RedisClient from "../../src/redis/RedisClient.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { withConfig } from "../support/config.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { urlWithPassword } from "../support/redisServer.js"
import { TestRedis, testRedisLayer } from "./harness.js"

const PASSWORD = "hunter2"

const withPassword = (url: string, user: string): string => urlWithPassword(url, user, PASSWORD)

/** A meter of 10 per 30 days: a test debits it twice on the Redis clock, so no window may end in between. */
const meter = (ns: string): ReadonlyArray<Policy> => [
  {
    kind: "meter",
    name: "tokens",
    prefix: `${ns}:tokens`,
    maxKeys: 1000,
    budget: 10,
    windowMs: LONG_WINDOW_MS,
    shared: false
  }
]

/** Every text a failure can be printed as. */
const printed = (error: unknown): ReadonlyArray<string> => [
  error instanceof Error ? error.message : "",
  String(error),
  JSON.stringify(error),
  Cause.pretty(Cause.fail(error))
]

/** Runs `effect` with its log lines and `console.warn` calls (ioredis warns there) recorded. */
const recording = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const warn = vi.spyOn(console, "warn").mockImplementation((...args: ReadonlyArray<unknown>) => {
      lines.push(args.map(String).join(" "))
    })
    const logger = Logger.make(({ message }) => lines.push(JSON.stringify(message)))
    const value = yield* effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Effect.ensuring(Effect.sync(() => warn.mockRestore()))
    )
    return { value, lines }
  })

describe("a Redis URL with a password", () => {
  layer(testRedisLayer())((it) => {
    it.effect(
      "no failure prints it: a refused login, a dead port, an unparsable URL, plain or Redacted",
      () =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const urls = [
            // The real server knows no user "alice": it refuses the login.
            withPassword(env.url, "alice"),
            // Nothing listens on port 1.
            `redis://:${PASSWORD}@127.0.0.1:1`,
            // ioredis cannot parse it (its parser's error repeats the URL).
            `redis://:${PASSWORD}@[bad:1`
          ]
          for (const url of urls) {
            for (const redis of [url, Redacted.make(url)]) {
              const builds = [
                Effect.asVoid(Layer.build(RedisClient.layer(redis, { timeoutMs: 500 }))),
                Effect.asVoid(Layer.build(RedisBackend.layer({ policies: meter(env.ns), redis, timeoutMs: 500 }))),
                Effect.asVoid(Layer.build(RedisCoordinator.layer({ redis, timeoutMs: 500 })))
              ]
              for (const build of builds) {
                const { lines, value: error } = yield* recording(Effect.flip(Effect.scoped(build)))
                expect(["ServiceUnavailable", "BackendError"]).toContain(error._tag)
                for (const text of [...printed(error), ...lines]) expect(text).not.toContain(PASSWORD)
              }
            }
          }
          const unparsable = yield* Effect.flip(Effect.scoped(Layer.build(RedisClient.layer(urls[2]!))))
          expect(unparsable).toMatchObject({ _tag: "BackendError", backend: "redis", code: "CONFIG" })
          expect(unparsable.cause).toBeUndefined()
        }),
      { timeout: 30_000 }
    )

    it.effect("Redacted, it connects (here to a Redis without a password) and prints as <redacted>", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const url = Redacted.make(withPassword(env.url, ""))
        const options = { policies: meter(`${env.ns}:redacted`), redis: url }
        for (const text of [String(options.redis), JSON.stringify(options)]) expect(text).not.toContain(PASSWORD)

        const { lines, value: debit } = yield* recording(Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => limiter.debit("tokens", "k", 4)),
          RedisBackend.layer(options)
        ))
        expect([debit.allowed, debit.remaining]).toEqual([true, 6])
        for (const line of lines) expect(line).not.toContain(PASSWORD)

        // Through Config: `Config.redacted` reads it, and the same store answers.
        const backend = RedisBackend.layerConfig({
          policies: Config.succeed(options.policies),
          redis: Config.redacted("URL")
        })
        const viaConfig = yield* recording(Effect.provide(
          Effect.flatMap(RateLimiter, (limiter) => limiter.debit("tokens", "k", 4)),
          withConfig(backend, [["URL", Redacted.value(url)]])
        ))
        expect([viaConfig.value.allowed, viaConfig.value.remaining]).toEqual([true, 2])
        for (const line of viaConfig.lines) expect(line).not.toContain(PASSWORD)
      }))

    it.effect("RedisClient and RedisCoordinator read their connection from Config; a missing one is a PolicyError", () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const fixed: WindowedStrategy = { kind: "fixedWindow", limit: 5, windowMs: 60_000 }
        const url = Config.redacted("THROTTLEKIT_REDIS_URL")
        const reserveWith = (entries: ReadonlyArray<readonly [string, string]>) =>
          Effect.provide(
            Effect.flatMap(Coordinator, (coordinator) => coordinator.reserve(fixed, `${env.ns}:config`, 2)),
            withConfig(RedisCoordinator.layerConfig({ redis: url, timeoutMs: Config.integer("TIMEOUT_MS") }), entries)
          )
        const grant = yield* reserveWith([["THROTTLEKIT_REDIS_URL", env.url], ["TIMEOUT_MS", "500"]])
        expect([grant.granted, grant.limit]).toEqual([2, 5])
        const missing = yield* Effect.flip(reserveWith([["THROTTLEKIT_REDIS_URL", env.url]]))
        expect(ConfigError.isConfigError(missing)).toBe(true)
        expect(missing.message).toContain("TIMEOUT_MS")
        // The failed layer reserved nothing.
        expect((yield* reserveWith([["THROTTLEKIT_REDIS_URL", env.url], ["TIMEOUT_MS", "500"]])).granted).toBe(2)

        const shared = RedisClient.layerConfig(url, { timeoutMs: Config.succeed(500) })
        const ping = Effect.flatMap(RedisClient.RedisClient, (redis) => Effect.tryPromise(() => redis.client.ping()))
        expect(yield* Effect.provide(ping, withConfig(shared, [["THROTTLEKIT_REDIS_URL", env.url]])))
          .toBe("PONG")
        const none = yield* Effect.flip(Effect.scoped(Layer.build(withConfig(shared, []))))
        expect(ConfigError.isConfigError(none)).toBe(true)
      }))
  })
})
