/**
 * The Redis door: the `RateLimiter` service computed by the vendored Lua inside Redis, so every process
 * on one Redis shares one limit, and a Node, Python or TypeScript client on the same limit shares one key
 * and one state (CONTRACT.md §5).
 *
 * - Keys: a limiter or budget key is `prefix:key` (the wire's key; the prefix defaults to the policy
 *   name). An admitter keeps its held leases and its ceiling state in `{prefix}#leases` / `{prefix}#guard`
 *   and a unified admitter's rate keys in `{prefix}:key`: one hash tag, so one admission is one script
 *   in one cluster slot.
 * - Time: the Redis server clock by default (skew-free across a fleet); `clock: "effect"` passes Effect's
 *   `Clock` instead (deterministic tests and replays). `checkMany` is one pipelined round trip; with the
 *   Redis clock each key's script reads `TIME` itself, so one instant for the batch is likely (the scripts
 *   run back to back) but not guaranteed; with Effect's clock the whole batch gets one instant.
 * - Faults: every call is bounded (`timeoutMs`, default 1000 ms) and fails with `ServiceUnavailable` when
 *   Redis is unreachable or too slow, with `BackendError` when a script fails. Nothing is retried blindly:
 *   a consuming check runs at most once per call. ioredis reconnects in the background, so the backend
 *   recovers when Redis comes back.
 * - Leases live in Redis: any process serving the same admitter can release or renew them. A lease id is
 *   40 hex characters: the first 8 name the admitter (a hash of its lease key), the other 32 are 128
 *   random bits, as unguessable as the Memory door's.
 * - Key caps (`maxKeys`) do not apply: Redis keys expire on their own TTLs.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import { Admission, type Decision, Forecast, fromData } from "../Decision.js"
import {
  BackendError,
  InvalidArgument,
  type Operation,
  OperationNotSupported,
  PolicyNotFound,
  type RateLimiterError,
  type ServiceUnavailable
} from "../Errors.js"
import { makeAdmit } from "../internal/admission.js"
import {
  type AdmitterPolicy,
  type LimiterPolicy,
  type MeterPolicy,
  type Policy,
  storeKey,
  type Strategy
} from "../Policy.js"
import * as CallTemplate from "../redis/CallTemplate.js"
import { acquireClient, DEFAULT_TIMEOUT_MS, type RedisConnection } from "../redis/RedisClient.js"
import * as Replies from "../redis/Replies.js"
import { type ScriptClock, scriptNow } from "../redis/ScriptClock.js"
import { evalArgs, makeScriptRunner, type ScriptCall, type ScriptRunner } from "../redis/ScriptRunner.js"
import { loadScripts, type Named, type Script, type ScriptCatalog, sha1Hex } from "../redis/Scripts.js"
import {
  type AdmitOptions,
  type HeartbeatResult,
  type Leases,
  RateLimiter,
  type RateLimiterService
} from "../services/RateLimiter.js"
import * as Validate from "../Validate.js"

/**
 * Options of the Redis door.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisBackendOptions {
  /** The policies to serve: an array, or a `PolicySet` from `Config.load`/`Config.parse`. */
  readonly policies: ReadonlyArray<Policy> | { readonly policies: ReadonlyArray<Policy> }
  /** A URL, ioredis options, or `{ client }` (an existing client, left open when the layer closes). */
  readonly redis: RedisConnection
  /** Whose clock decides: Redis's (default) or Effect's `Clock`. */
  readonly clock?: ScriptClock
  /** Bound on every Redis call, in ms (default 1000). */
  readonly timeoutMs?: number
  /** Lease TTL in ms (default 2000): a lease not renewed within it is reclaimed as dropped. */
  readonly leaseTtlMs?: number
  /** How often the admission keeper renews kept-alive leases (default half the lease TTL). */
  readonly heartbeatIntervalMs?: number
}

/**
 * The default lease TTL, as the reference server's.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_LEASE_TTL_MS = 2000

interface LimiterEntry {
  readonly kind: "limiter"
  readonly policy: LimiterPolicy
  readonly params: Named
  readonly check: Script
  /** The check's prebuilt call (the hot path), when the script's shape allows one. */
  readonly checkCall: CallTemplate.CallTemplate | undefined
  readonly peek: Script
  readonly forecast: Script
}

interface MeterEntry {
  readonly kind: "meter"
  readonly policy: MeterPolicy
  readonly debit: Script
}

interface AdmitterEntry {
  readonly kind: "admitter"
  readonly policy: AdmitterPolicy
  /** The concurrency parameters and, for a unified admitter, the rate strategy's. */
  readonly params: Named
  readonly acquire: Script
  readonly release: Script
  readonly renew: Script
  readonly keys: { readonly leases: string; readonly guard: string }
  /** The unified admitter's rate key prefix (`{tag}`), or undefined for a pure concurrency admitter. */
  readonly ratePrefix: string | undefined
  /** The first 8 hex characters of every lease id this admitter mints. */
  readonly leaseTag: string
}

type Entry = LimiterEntry | MeterEntry | AdmitterEntry

const strategyParams = (strategy: Strategy): Named => {
  const { kind: _kind, ...params } = strategy
  return params
}

const configError = (detail: string) => new BackendError({ backend: "redis", code: "CONFIG", detail })

const compile = (catalog: ScriptCatalog, policy: Policy): Effect.Effect<Entry, BackendError> => {
  const need = (strategy: string, role: string) => {
    const script = catalog.find(strategy, role)
    return script === undefined
      ? Effect.fail(configError(`policy ${JSON.stringify(policy.name)}: no ${strategy}.${role} script in vendor/lua`))
      : Effect.succeed(script)
  }
  switch (policy.kind) {
    case "limiter":
      return Effect.gen(function*() {
        const params = strategyParams(policy.strategy)
        const check = yield* need(policy.strategy.kind, "check")
        return {
          kind: "limiter",
          policy,
          params,
          check,
          checkCall: yield* CallTemplate.make(check, params),
          peek: yield* need(policy.strategy.kind, "peek"),
          forecast: yield* need(policy.strategy.kind, "forecast")
        }
      })
    case "meter":
      return Effect.map(need("tokenBudget", "debit"), (debit): Entry => ({ kind: "meter", policy, debit }))
    case "admitter": {
      const tag = `{${policy.prefix === "" ? policy.name : policy.prefix}}`
      const leases = `${tag}#leases`
      const c = policy.concurrency
      const concurrency: Named = {
        algorithm: c.algorithm,
        minLimit: c.minLimit,
        maxLimit: c.maxLimit,
        initialLimit: c.initialLimit,
        backoffRatio: c.backoffRatio,
        smoothing: c.smoothing,
        tolerance: c.tolerance,
        rttWindow: c.rttWindow
      }
      return Effect.all({
        acquire: policy.rate === undefined ? need("concurrency", "acquire") : need(policy.rate.kind, "admit"),
        release: need("concurrency", "release"),
        renew: need("concurrency", "renew")
      }).pipe(Effect.map((s): Entry => ({
        kind: "admitter",
        policy,
        params: policy.rate === undefined ? concurrency : { ...strategyParams(policy.rate), ...concurrency },
        ...s,
        keys: { leases, guard: `${tag}#guard` },
        ratePrefix: policy.rate === undefined ? undefined : tag,
        leaseTag: sha1Hex(leases).slice(0, 8)
      })))
    }
  }
}

const MAX_LEASE_ID_DRAWS = 4

/**
 * Builds the Redis door's `RateLimiter` service: loads the scripts, connects (or adopts the given
 * client) and starts the admission keeper, all in the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: RedisBackendOptions
): Effect.Effect<RateLimiterService, ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const ttlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS
    const catalog = yield* loadScripts()
    const list = "policies" in options.policies ? options.policies.policies : options.policies
    const entries = new Map<string, Entry>()
    for (const policy of list) entries.set(policy.name, yield* compile(catalog, policy))
    const admitters = new Map<string, AdmitterEntry>()
    for (const entry of entries.values()) {
      if (entry.kind !== "admitter") continue
      const clash = admitters.get(entry.leaseTag)
      if (clash !== undefined) {
        return yield* Effect.fail(configError(
          `admitters ${JSON.stringify(clash.policy.name)} and ${JSON.stringify(entry.policy.name)} share a lease key ` +
            "hash prefix; give one of them another prefix"
        ))
      }
      admitters.set(entry.leaseTag, entry)
    }
    const names = Array.from(entries.keys())
    const client = yield* acquireClient(options.redis, timeoutMs)
    const runner: ScriptRunner = makeScriptRunner(client, timeoutMs)

    /** The `now` ARGV: 0 (the Redis clock) or Effect's clock, which must be a real instant. */
    const now = scriptNow(options.clock)
    const redisClock = options.clock !== "effect"

    const lookup = (name: string): Effect.Effect<Entry, PolicyNotFound> => {
      const entry = entries.get(name)
      return entry === undefined
        ? Effect.fail(new PolicyNotFound({ policy: name, configured: names }))
        : Effect.succeed(entry)
    }

    const unsupported = (policy: string, operation: Operation, kind: string) =>
      Effect.fail(new OperationNotSupported({ policy, operation, reason: `a ${kind} policy` }))

    const limiterOf = (name: string, operation: Operation): Effect.Effect<LimiterEntry, RateLimiterError> =>
      Effect.flatMap(lookup(name), (entry) =>
        entry.kind === "limiter" ? Effect.succeed(entry) : unsupported(name, operation, entry.kind))

    const validCost = (cost: number, argument = "cost") => {
      const problem = Validate.costProblem(cost)
      return problem === undefined ? Effect.void : Effect.fail(new InvalidArgument({ argument, reason: problem }))
    }

    const validKey = (key: string) => {
      const problem = Validate.keyProblem(key)
      return problem === undefined
        ? Effect.void
        : Effect.fail(new InvalidArgument({ argument: "key", reason: problem }))
    }

    const runDecision = (call: ScriptCall) =>
      runner.runDecoded(call.script, evalArgs(call), Replies.decisionOf)

    // The hot path: plain argument checks, then one Effect (the script call and the reply's decoding).
    // It carries no span of its own: a span per call cost about as much CPU as the whole raw EVALSHA it
    // wraps (see bench/). Callers that want one per check wrap it (the HTTP middleware does).
    const check = (name: string, key: string, cost: number = 1): Effect.Effect<Decision, RateLimiterError> => {
      const costProblem = Validate.costProblem(cost)
      if (costProblem !== undefined) return Effect.fail(new InvalidArgument({ argument: "cost", reason: costProblem }))
      const keyProblem = Validate.keyProblem(key)
      if (keyProblem !== undefined) return Effect.fail(new InvalidArgument({ argument: "key", reason: keyProblem }))
      const entry = entries.get(name)
      if (entry === undefined) return Effect.fail(new PolicyNotFound({ policy: name, configured: names }))
      if (entry.kind !== "limiter") return unsupported(name, "check", entry.kind)
      const storeK = storeKey(entry.policy.prefix, key)
      const template = entry.checkCall
      if (template === undefined) {
        return Effect.flatMap(now, (at) =>
          Effect.flatMap(
            runner.prepare(entry.check, { key: storeK }, { ...entry.params, now: at, cost }),
            runDecision
          ))
      }
      return redisClock
        ? runner.runDecoded(template.script, template.args(storeK, 0, cost), Replies.decisionOf)
        : Effect.flatMap(now, (at) =>
          runner.runDecoded(template.script, template.args(storeK, at, cost), Replies.decisionOf))
    }

    const checkMany = Effect.fn("RedisBackend.checkMany")(
      function*(
        name: string,
        keys: ReadonlyArray<string>,
        cost: number = 1
      ): Effect.fn.Return<ReadonlyArray<Decision>, RateLimiterError> {
        yield* validCost(cost)
        yield* Validate.keys(keys)
        const entry = yield* limiterOf(name, "checkMany")
        if (keys.length === 0) {
          return []
        }
        const at = yield* now
        const calls = yield* Effect.forEach(keys, (key) =>
          runner.prepare(entry.check, { key: storeKey(entry.policy.prefix, key) }, { ...entry.params, now: at, cost }))
        const replies = yield* runner.runPipelined(calls)
        return yield* Effect.forEach(replies, Replies.decisionOf)
      }
    )

    const peek = Effect.fn("RedisBackend.peek")(
      function*(name: string, key: string): Effect.fn.Return<Decision, RateLimiterError> {
        yield* validKey(key)
        const entry = yield* limiterOf(name, "peek")
        const call = yield* runner.prepare(entry.peek, { key: storeKey(entry.policy.prefix, key) }, {
          ...entry.params,
          now: yield* now
        })
        return yield* runDecision(call)
      }
    )

    const forecast = Effect.fn("RedisBackend.forecast")(
      function*(name: string, key: string, cost: number = 1): Effect.fn.Return<Forecast, RateLimiterError> {
        yield* validCost(cost)
        yield* validKey(key)
        const entry = yield* limiterOf(name, "forecast")
        const call = yield* runner.prepare(entry.forecast, { key: storeKey(entry.policy.prefix, key) }, {
          ...entry.params,
          now: yield* now,
          cost
        })
        const data = yield* Effect.flatMap(runner.run(call), Replies.forecast)
        return new Forecast(data, true)
      }
    )

    const debit = Effect.fn("RedisBackend.debit")(
      function*(name: string, key: string, tokens: number = 1): Effect.fn.Return<Decision, RateLimiterError> {
        yield* validCost(tokens, "tokens")
        yield* validKey(key)
        const entry = yield* lookup(name)
        if (entry.kind !== "meter") {
          return yield* unsupported(name, "debit", entry.kind)
        }
        const call = yield* runner.prepare(entry.debit, { key: storeKey(entry.policy.prefix, key) }, {
          budget: entry.policy.budget,
          windowMs: entry.policy.windowMs,
          now: yield* now,
          tokens
        })
        return yield* runDecision(call)
      }
    )

    const mintLeaseId = (entry: AdmitterEntry) =>
      Effect.sync(() =>
        entry.leaseTag + randomBytes(16).toString("hex")
      )

    const acquire = Effect.fn("RedisBackend.acquire")(
      function*(
        name: string,
        key: string,
        admitOptions: Pick<AdmitOptions, "cost" | "hold" | "value"> = {}
      ): Effect.fn.Return<Admission, RateLimiterError> {
        const cost = admitOptions.cost ?? 1
        yield* validCost(cost)
        yield* validKey(key)
        const entry = yield* lookup(name)
        if (entry.kind !== "admitter") {
          return yield* unsupported(name, "admit", entry.kind)
        }
        const keys: Named = entry.ratePrefix === undefined
          ? entry.keys
          : { ...entry.keys, key: storeKey(entry.ratePrefix, key) }
        const at = yield* now
        for (let draw = 0; draw < MAX_LEASE_ID_DRAWS; draw++) {
          const leaseId = yield* mintLeaseId(entry)
          const call = yield* runner.prepare(entry.acquire, keys, { ...entry.params, now: at, leaseId, ttlMs, cost })
          const answer = yield* Effect.flatMap(runner.run(call), Replies.admission)
          // A collision wrote nothing: draw another id.
          if (answer._tag === "Collision") {
            continue
          }
          const held = answer.decision.allowed
          return new Admission({
            decision: fromData(answer.decision),
            leaseId: held ? leaseId : "",
            leaseExpiresAt: held ? answer.leaseExpiresAt : 0,
            bindingAxis: answer.bindingAxis,
            policyDenied: false
          }, true)
        }
        return yield* Effect.fail(
          new BackendError({ backend: "redis", code: "LEASE_ID", detail: "could not draw an unused lease id" })
        )
      }
    )

    const admitterOfLease = (leaseId: string): AdmitterEntry | undefined =>
      /^[0-9a-f]{40}$/.test(leaseId) ? admitters.get(leaseId.slice(0, 8)) : undefined

    const release = Effect.fn("RedisBackend.release")(
      function*(leaseId: string, dropped: boolean): Effect.fn.Return<void, RateLimiterError> {
        const entry = admitterOfLease(leaseId)
        if (entry === undefined) {
          return
        }
        const call = yield* runner.prepare(entry.release, entry.keys, {
          ...entry.params,
          now: yield* now,
          leaseId,
          dropped: dropped ? 1 : 0
        })
        yield* runner.run(call)
      }
    )

    const heartbeat = Effect.fn("RedisBackend.heartbeat")(
      function*(leaseIds: ReadonlyArray<string>): Effect.fn.Return<HeartbeatResult, RateLimiterError> {
        const byAdmitter = new Map<AdmitterEntry, Array<string>>()
        for (const id of leaseIds) {
          const entry = admitterOfLease(id)
          if (entry === undefined) {
            continue
          }
          const ids = byAdmitter.get(entry)
          if (ids === undefined) {
            byAdmitter.set(entry, [id])
          } else ids.push(id)
        }
        const at = yield* now
        const groups = Array.from(byAdmitter.entries())
        const calls = yield* Effect.forEach(groups, ([entry, ids]) =>
          runner.prepare(entry.renew, entry.keys, { ...entry.params, now: at, ttlMs, "leaseIds...": ids }))
        const replies = yield* runner.runPipelined(calls)
        const live = new Set<string>()
        let nextDeadline = Number.POSITIVE_INFINITY
        for (const reply of replies) {
          const renewal = yield* Replies.renewal(reply)
          for (const id of renewal.live) {
            live.add(id)
          }
          if (renewal.nextDeadline < nextDeadline) {
            nextDeadline = renewal.nextDeadline
          }
        }
        if (nextDeadline === Number.POSITIVE_INFINITY) {
          nextDeadline = (yield* Clock.currentTimeMillis) + ttlMs
        }
        return {
          live: leaseIds.filter((id) =>
            live.has(id)
          ),
          reclaimed: leaseIds.filter((id) =>
            !live.has(id)
          ),
          nextDeadline
        }
      }
    )

    const leases: Leases = { ttlMs, acquire, release, heartbeat }
    const admit = yield* makeAdmit(
      leases,
      options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatIntervalMs }
    )
    return { backend: "redis", check, checkMany, peek, forecast, debit, admit, leases }
  })

/**
 * The Redis door as a layer. The client it creates is closed with the layer (a given `{ client }` is not).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: RedisBackendOptions): Layer.Layer<RateLimiter, ServiceUnavailable | BackendError> =>
  Layer.scoped(RateLimiter, make(options))

/**
 * The Redis door configured from `Config`: `THROTTLEKIT_REDIS_URL` (required),
 * `THROTTLEKIT_REDIS_TIMEOUT_MS` (default 1000) and `THROTTLEKIT_REDIS_CLOCK` (`redis` or `effect`,
 * default `redis`). Fields given in `options` win over the configuration.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Omit<RedisBackendOptions, "redis">
): Layer.Layer<RateLimiter, ConfigError.ConfigError | ServiceUnavailable | BackendError> =>
  Layer.scoped(
    RateLimiter,
    Effect.gen(function*() {
      const url = yield* Config.redacted("THROTTLEKIT_REDIS_URL")
      const timeoutMs = yield* Config.integer("THROTTLEKIT_REDIS_TIMEOUT_MS").pipe(
        Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
        Config.withDefault(DEFAULT_TIMEOUT_MS)
      )
      const clock = yield* Config.literal("redis", "effect")("THROTTLEKIT_REDIS_CLOCK").pipe(
        Config.withDefault("redis")
      )
      return yield* make({ clock, timeoutMs, ...options, redis: Redacted.value(url) })
    })
  )
