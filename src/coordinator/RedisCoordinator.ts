/**
 * The shared coordinator: each reservation is one atomic script in Redis (`fixedWindow.reserve` or
 * `slidingWindow.reserve` from `vendor/lua`), on one key, so every server of a fleet pointed at the same
 * Redis draws from one budget per key.
 *
 * - Time: the Redis server clock by default, so the window boundary a grant reports is the store's, the
 *   same for every holder however their clocks drift; `clock: "effect"` passes Effect's `Clock` instead
 *   (deterministic tests).
 * - Faults: every call is bounded (`timeoutMs`, default 1000 ms): `ServiceUnavailable` when Redis is
 *   unreachable or slow, `BackendError` when a script fails. A reservation consumes, so it is never
 *   retried blindly (EVAL after NOSCRIPT only, which means the script did not run).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { BackendError, type ServiceUnavailable } from "../Errors.js"
import { acquireClient, DEFAULT_TIMEOUT_MS, type RedisConnection } from "../redis/RedisClient.js"
import { type ScriptClock, scriptNow } from "../redis/ScriptClock.js"
import { makeScriptRunner, type Reply } from "../redis/ScriptRunner.js"
import { loadScripts, type Script } from "../redis/Scripts.js"
import { Coordinator, type CoordinatorService, reservationProblem } from "./Coordinator.js"
import type { Grant, WindowedStrategy } from "./reserve.js"

/**
 * Options of the Redis coordinator.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisCoordinatorOptions {
  /** A URL, ioredis options, or `{ client }` (an existing client, left open when the layer closes). */
  readonly redis: RedisConnection
  /** Whose clock decides: Redis's (default) or Effect's `Clock`. */
  readonly clock?: ScriptClock
  /** Bound on every Redis call, in ms (default 1000). */
  readonly timeoutMs?: number
}

const malformed = (reply: Reply) =>
  new BackendError({ backend: "redis", code: "REPLY", detail: `malformed reserve reply: ${JSON.stringify(reply)}` })

/**
 * Decodes a reserve script's reply `[granted, expiresAt, limit]`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const grantFromReply = (reply: Reply): Effect.Effect<Grant, BackendError> => {
  if (!Array.isArray(reply) || reply.length !== 3) return Effect.fail(malformed(reply))
  const [granted, expiresAt, limit] = reply as ReadonlyArray<Reply>
  if (typeof granted !== "number" || typeof expiresAt !== "number" || typeof limit !== "number") {
    return Effect.fail(malformed(reply))
  }
  return Effect.succeed({ granted, expiresAt, limit })
}

/**
 * Builds the Redis coordinator: loads the reserve scripts and connects (or adopts the given client), in
 * the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: RedisCoordinatorOptions
): Effect.Effect<CoordinatorService, ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const catalog = yield* loadScripts()
    const need = (strategy: string): Effect.Effect<Script, BackendError> => {
      const script = catalog.find(strategy, "reserve")
      return script === undefined
        ? Effect.fail(
          new BackendError({ backend: "redis", code: "CONFIG", detail: `no ${strategy}.reserve script in vendor/lua` })
        )
        : Effect.succeed(script)
    }
    const scripts = { fixedWindow: yield* need("fixedWindow"), slidingWindow: yield* need("slidingWindow") }
    const client = yield* acquireClient(options.redis, timeoutMs)
    const runner = makeScriptRunner(client, timeoutMs)

    const now = scriptNow(options.clock)

    const argvOf = (strategy: WindowedStrategy, at: number, wants: number) =>
      strategy.kind === "fixedWindow"
        ? { now: at, limit: strategy.limit, windowMs: strategy.windowMs, wants }
        : { now: at, windowMs: strategy.windowMs, limit: strategy.limit, wants, buckets: strategy.buckets }

    const reserve = Effect.fn("RedisCoordinator.reserve")(
      function*(strategy: WindowedStrategy, key: string, wants: number) {
        const problem = reservationProblem(key, wants)
        if (problem !== undefined) return yield* Effect.fail(problem)
        const call = yield* runner.prepare(scripts[strategy.kind], { key }, argvOf(strategy, yield* now, wants))
        return yield* Effect.flatMap(runner.run(call), grantFromReply)
      }
    )

    return { store: "redis", reserve }
  })

/**
 * The Redis coordinator as a layer. The client it creates is closed with the layer (a given `{ client }`
 * is not).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: RedisCoordinatorOptions
): Layer.Layer<Coordinator, ServiceUnavailable | BackendError> => Layer.scoped(Coordinator, make(options))
