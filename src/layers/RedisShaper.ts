/**
 * The fleet-wide shaper store: one departure per key in Redis (a string at `prefix:key`, under the
 * connection's key prefix), reserved and given back by Lua scripts (`vendor/lua/shaper.*.lua`, built with
 * the others), so every process shaping on one Redis shares one rate per key. The arithmetic is
 * `engine/shaper.ts`'s, in its order. Time is the Redis server clock by default (one clock for the
 * fleet); `clock: "effect"` passes Effect's `Clock` (so `TestClock` drives it in tests). Every call is
 * bounded by the connection's timeout and fenced (a reservation that timed out never counts later).
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Outcome } from "../engine/shaper.js"
import { BackendError, type InvalidArgument, type ServiceUnavailable } from "../Errors.js"
import { storeKey } from "../Policy.js"
import * as RedisClient from "../redis/RedisClient.js"
import type { ScriptClock } from "../redis/ScriptClock.js"
import { scriptNow } from "../redis/ScriptClock.js"
import { evalArgs, type Reply } from "../redis/ScriptRunner.js"
import {
  make as makeFront,
  reservationOf,
  Shaper,
  type ShaperPolicy,
  type ShaperService,
  type ShaperStore
} from "../services/Shaper.js"
import { decodeShapers } from "./MemoryShaper.js"

/**
 * Options of the Redis shaper store.
 *
 * @since 0.3.0
 * @category models
 */
export interface RedisShaperOptions {
  readonly shapers: ReadonlyArray<ShaperPolicy>
  /** A URL (plain, or `Redacted`), ioredis options, or `{ client }` (left open when the scope closes). */
  readonly redis: RedisClient.RedisConnection
  /** Whose clock decides: Redis's (default) or Effect's `Clock`. */
  readonly clock?: ScriptClock
  /** The bound of each call in ms (default `RedisClient.DEFAULT_TIMEOUT_MS`). */
  readonly timeoutMs?: number
  /** A deployment's namespace: every key becomes `<keyPrefix>:<key>`. */
  readonly keyPrefix?: string
}

const malformed = (reply: Reply) =>
  new BackendError({ backend: "redis", code: "PROTOCOL", detail: `shaper: unexpected reply ${JSON.stringify(reply)}` })

/** A `shaper.reserve` reply: {accepted, delayMs, retryAfterMs, start, end, remaining, limit}. */
const outcomeOf = (reply: Reply): Effect.Effect<Outcome, BackendError> => {
  if (!Array.isArray(reply) || reply.length !== 7) return Effect.fail(malformed(reply))
  const [accepted, delayMs, retryAfterMs, start, end, remaining, limit] = reply as ReadonlyArray<Reply>
  const startAt = Number(start)
  const endAt = Number(end)
  if (
    typeof delayMs !== "number" || typeof retryAfterMs !== "number" || typeof remaining !== "number" ||
    typeof limit !== "number" || !Number.isFinite(startAt) || !Number.isFinite(endAt)
  ) return Effect.fail(malformed(reply))
  return Effect.succeed({
    accepted: accepted === 1,
    delayMs,
    retryAfterMs,
    start: startAt,
    end: endAt,
    remaining,
    limit,
    expiresAt: endAt
  })
}

/**
 * The Redis shaper store on a shared connection (`RedisClient`), over already-decoded shapers. Fails with
 * `BackendError` when the vendored scripts lack the shaper's.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeStoreOn = (
  redis: RedisClient.SharedRedis,
  shapers: ReadonlyArray<ShaperPolicy>,
  clock?: ScriptClock
): Effect.Effect<ShaperStore, BackendError> => {
  const reserveScript = redis.scripts.find("shaper", "reserve")
  const giveBackScript = redis.scripts.find("shaper", "giveBack")
  if (reserveScript === undefined || giveBackScript === undefined) {
    return Effect.fail(
      new BackendError({ backend: "redis", code: "SCRIPT", detail: "the shaper scripts are missing from vendor/lua" })
    )
  }
  const runner = redis.runner
  const now = scriptNow(clock)
  const run = <A>(
    script: typeof reserveScript,
    key: string,
    argv: Readonly<Record<string, number>>,
    decode: (reply: Reply) => Effect.Effect<A, BackendError>
  ): Effect.Effect<A, ServiceUnavailable | BackendError | InvalidArgument> =>
    Effect.flatMap(now, (at) =>
      Effect.flatMap(
        runner.prepare(script, { key }, { now: at, ...argv }),
        (call) => runner.runDecoded(call.script, evalArgs(call), decode)
      ))
  return Effect.succeed({
    backend: "redis",
    shapers,
    bind: (shaper) => {
      const keyOf = (key: string) => redis.keyPrefix + storeKey(shaper.prefix, key)
      return {
        reserve: (key, cost) =>
          run(
            reserveScript,
            keyOf(key),
            { ratePerSec: shaper.ratePerSec, maxQueueMs: shaper.maxQueueMs, cost },
            (reply) => Effect.map(outcomeOf(reply), (outcome) => reservationOf(shaper.name, key, cost, outcome))
          ),
        giveBack: (reservation) =>
          run(
            giveBackScript,
            keyOf(reservation.key),
            { start: reservation.start, end: reservation.end },
            (reply) => Effect.succeed(reply === 1)
          )
      }
    }
  })
}

/**
 * The Redis `Shaper` service: the front over the Redis store. The client it creates (and its scripts)
 * live in the given scope. Fails with `InvalidArgument` for a bad shaper.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: RedisShaperOptions
): Effect.Effect<ShaperService, InvalidArgument | ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const shapers = yield* decodeShapers(options.shapers)
    const redis = yield* RedisClient.make(options.redis, {
      timeoutMs: options.timeoutMs,
      keyPrefix: options.keyPrefix
    })
    return makeFront(yield* makeStoreOn(redis, shapers, options.clock))
  })

/**
 * The Redis `Shaper` as a layer: one rate per key for every process shaping on this Redis.
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (
  options: RedisShaperOptions
): Layer.Layer<Shaper, InvalidArgument | ServiceUnavailable | BackendError> => Layer.scoped(Shaper, make(options))
