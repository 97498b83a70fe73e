/**
 * The shared coordinator: each reservation is one atomic script in Redis (`fixedWindow.reserve` or
 * `slidingWindow.reserve` from `vendor/lua`), on one key, so every server of a fleet pointed at the same
 * Redis draws from one budget per key. A federated budget (`lease`) runs `federated.lease`, the ThrottleKit
 * core coordinator's script wire (its key, ARGV and hash `budget` / `expiresAt`), so core servers on the
 * same Redis draw from it too.
 *
 * - Time: the Redis server clock by default, so the window boundary a grant reports is the store's, the
 *   same for every holder however their clocks drift; `clock: "effect"` passes Effect's `Clock` instead
 *   (deterministic tests).
 * - Faults: every call is bounded (`timeoutMs`, default 1000 ms): `ServiceUnavailable` when Redis is
 *   unreachable or slow, `BackendError` when a script fails. A reservation consumes, so it is never
 *   retried blindly (EVAL after NOSCRIPT only, which means the script did not run).
 * - Cost: a reservation is every lease refresh's round trip, so it is a hot path: one prebuilt call per
 *   strategy (`CallTemplate`), one Effect step (`ScriptRunner.runDecoded`), no span. With the Redis clock
 *   it is also offered as `reserveCallback`, the same call reported through a callback, so a background
 *   refresh costs no fiber.
 * - Connection: `make` / `layer` / `layerConfig` open their own (a URL with a password given as
 *   `Redacted`); `makeOn` / `layerShared` run on a shared one (`RedisClient`), e.g. the Redis store's.
 *   There is no `layerFile`: a coordinator holds no policies.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { BackendError, type ServiceUnavailable } from "../Errors.js"
import * as CallTemplate from "../redis/CallTemplate.js"
import * as RedisClient from "../redis/RedisClient.js"
import type { RedisConnection, SharedRedis } from "../redis/RedisClient.js"
import { type ScriptClock, scriptNow } from "../redis/ScriptClock.js"
import { evalArgs, type Reply } from "../redis/ScriptRunner.js"
import type { Script } from "../redis/Scripts.js"
import { Coordinator, type CoordinatorService, reservationProblem } from "./Coordinator.js"
import type { Grant, WindowedStrategy } from "./reserve.js"

/**
 * Options of the Redis coordinator.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisCoordinatorOptions {
  /**
   * A URL (plain, or `Redacted` when it holds a password), ioredis options, or `{ client }` (an existing
   * client, left open when the layer closes).
   */
  readonly redis: RedisConnection
  /** Whose clock decides: Redis's (default) or Effect's `Clock`. */
  readonly clock?: ScriptClock
  /** Bound on every Redis call, in ms (default 1000). */
  readonly timeoutMs?: number
  /** A deployment's namespace: every key becomes `<keyPrefix>:<key>` (see `RedisClientOptions`). */
  readonly keyPrefix?: string
  /** Replicas that must acknowledge each reservation before it answers (see `RedisClientOptions`). */
  readonly replicaAcks?: number
}

const malformed = (reply: Reply) =>
  new BackendError({ backend: "redis", code: "REPLY", detail: `malformed reserve reply: ${JSON.stringify(reply)}` })

/**
 * Decodes a reserve script's reply `[granted, expiresAt, limit]`.
 *
 * @since 0.1.0
 * @category decoding
 * @internal
 */
export const grantOf = (reply: Reply): Exit.Exit<Grant, BackendError> => {
  if (!Array.isArray(reply) || reply.length !== 3) return Exit.fail(malformed(reply))
  const [granted, expiresAt, limit] = reply as ReadonlyArray<Reply>
  if (typeof granted !== "number" || typeof expiresAt !== "number" || typeof limit !== "number") {
    return Exit.fail(malformed(reply))
  }
  return Exit.succeed({ granted, expiresAt, limit })
}

/**
 * Decodes a `federated.lease` reply `[granted, expiresAt]` (the core coordinator's) as a grant of a budget
 * of `limit`.
 *
 * @since 0.3.0
 * @category decoding
 * @internal
 */
export const leaseGrantOf = (reply: Reply, limit: number): Effect.Effect<Grant, BackendError> => {
  if (!Array.isArray(reply) || reply.length !== 2) return Effect.fail(malformed(reply))
  const [granted, expiresAt] = reply as ReadonlyArray<Reply>
  return typeof granted === "number" && typeof expiresAt === "number"
    ? Effect.succeed({ granted, expiresAt, limit })
    : Effect.fail(malformed(reply))
}

/**
 * Decodes a reserve script's reply `[granted, expiresAt, limit]` (an `Exit` is an `Effect`).
 *
 * @since 0.1.0
 * @category decoding
 * @internal
 */
export const grantFromReply = (reply: Reply): Effect.Effect<Grant, BackendError> => grantOf(reply)

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
  Effect.flatMap(
    RedisClient.make(options.redis, {
      timeoutMs: options.timeoutMs,
      keyPrefix: options.keyPrefix,
      replicaAcks: options.replicaAcks
    }),
    (redis) => makeOn(redis, options.clock === undefined ? {} : { clock: options.clock })
  )

/**
 * Options of the Redis coordinator over a shared connection (`RedisClient`): the connection and its
 * bound are the connection's.
 *
 * @since 0.2.0
 * @category models
 */
export type RedisCoordinatorSharedOptions = Omit<
  RedisCoordinatorOptions,
  "redis" | "timeoutMs" | "keyPrefix" | "replicaAcks"
>

/**
 * Builds the Redis coordinator over a shared connection (its client, scripts and runner). The connection
 * stays its owner's.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeOn = (
  redis: SharedRedis,
  options: RedisCoordinatorSharedOptions = {}
): Effect.Effect<CoordinatorService, BackendError> =>
  Effect.gen(function*() {
    const catalog = redis.scripts
    const need = (strategy: string): Effect.Effect<Script, BackendError> => {
      const script = catalog.find(strategy, "reserve")
      return script === undefined
        ? Effect.fail(
          new BackendError({ backend: "redis", code: "CONFIG", detail: `no ${strategy}.reserve script in vendor/lua` })
        )
        : Effect.succeed(script)
    }
    const scripts = { fixedWindow: yield* need("fixedWindow"), slidingWindow: yield* need("slidingWindow") }
    const leaseScript = catalog.find("federated", "lease")
    if (leaseScript === undefined) {
      return yield* Effect.fail(
        new BackendError({ backend: "redis", code: "CONFIG", detail: "no federated.lease script in vendor/lua" })
      )
    }
    const runner = redis.runner

    const now = scriptNow(options.clock)
    const redisClock = options.clock !== "effect"

    // One prebuilt call per strategy (by identity: a policy's strategy is one object), so a reservation
    // copies one array instead of marshalling its ARGV by name.
    const templates = new WeakMap<WindowedStrategy, CallTemplate.CallTemplate>()
    const templateOf = (strategy: WindowedStrategy): Effect.Effect<CallTemplate.CallTemplate, BackendError> => {
      const known = templates.get(strategy)
      if (known !== undefined) return Effect.succeed(known)
      const params = strategy.kind === "fixedWindow"
        ? { limit: strategy.limit, windowMs: strategy.windowMs }
        : { windowMs: strategy.windowMs, limit: strategy.limit, buckets: strategy.buckets }
      return Effect.flatMap(CallTemplate.make(scripts[strategy.kind], params, "wants"), (template) => {
        if (template === undefined) {
          return Effect.fail(
            new BackendError({ backend: "redis", code: "CONFIG", detail: `${strategy.kind}.reserve takes no template` })
          )
        }
        templates.set(strategy, template)
        return Effect.succeed(template)
      })
    }

    const deployment = redis.keyPrefix
    const send = (template: CallTemplate.CallTemplate, key: string, at: number, wants: number) =>
      runner.runDecoded(template.script, template.args(deployment + key, at, wants), grantFromReply)

    // The hot path of every lease refresh: plain argument checks, then one Effect (the script call and the
    // reply's decoding). No span: a span per call cost more CPU than the rest of the refresh.
    const reserve: CoordinatorService["reserve"] = (strategy, key, wants) => {
      const problem = reservationProblem(key, wants)
      if (problem !== undefined) return Effect.fail(problem)
      const template = templates.get(strategy)
      if (template !== undefined && redisClock) return send(template, key, 0, wants)
      return Effect.flatMap(templateOf(strategy), (built) =>
        redisClock ? send(built, key, 0, wants) : Effect.flatMap(now, (at) => send(built, key, at, wants)))
    }

    // Outside a fiber there is no Effect clock to read: offered with the Redis clock only. A strategy seen
    // for the first time (its call not built yet) and bad input take the Effect path on the layer's runtime.
    const runtime = yield* Effect.runtime<never>()
    const reserveCallback: CoordinatorService["reserveCallback"] = (strategy, key, wants, done) => {
      const template = templates.get(strategy)
      if (template === undefined || reservationProblem(key, wants) !== undefined) {
        Runtime.runCallback(runtime)(reserve(strategy, key, wants), { onExit: done })
        return
      }
      runner.runCallback(
        template.script,
        template.args(deployment + key, 0, wants),
        (reply) =>
          done(grantOf(reply)),
        (failure) => done(Exit.fail(failure))
      )
    }

    // A federated budget in the core coordinator's layout (`federated.lease`), so core servers share it.
    const lease: NonNullable<CoordinatorService["lease"]> = (budget, key, wants) => {
      const problem = reservationProblem(key, wants)
      if (problem !== undefined) return Effect.fail(problem)
      return Effect.flatMap(now, (at) =>
        Effect.flatMap(
          runner.prepare(leaseScript, { key: deployment + key }, {
            now: at,
            tokens: wants,
            windowMs: budget.windowMs,
            budget: budget.limit
          }),
          (call) => runner.runDecoded(call.script, evalArgs(call), (reply) => leaseGrantOf(reply, budget.limit))
        ))
    }

    return redisClock ? { store: "redis", reserve, reserveCallback, lease } : { store: "redis", reserve, lease }
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

/**
 * The Redis coordinator configured from `Config`: the options of `layer`, each a `Config`
 * (`Config.succeed` for a fixed value), e.g. `layerConfig({ redis: Config.redacted("REDIS_URL") })`. A
 * missing or invalid value fails the layer with Effect's `ConfigError`; then it is built as `layer`
 * builds it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<RedisCoordinatorOptions>
): Layer.Layer<Coordinator, EffectConfigError.ConfigError | ServiceUnavailable | BackendError> =>
  Layer.scoped(Coordinator, Effect.flatMap(Config.unwrap(config), make))

/**
 * The Redis coordinator as a layer over the shared connection in context (`RedisClient.layer`), so it can
 * share one connection with e.g. a `RedisBackend.layerStoreShared`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerShared = (
  options: RedisCoordinatorSharedOptions = {}
): Layer.Layer<Coordinator, BackendError, RedisClient.RedisClient> =>
  Layer.effect(Coordinator, Effect.flatMap(RedisClient.RedisClient, (redis) => makeOn(redis, options)))
