/**
 * The Redis door: a store (`RateLimiterStore`) whose state lives in Redis and is computed by the vendored
 * Lua, so every process on one Redis shares one limit, and a Node, Python or TypeScript client on the
 * same limit shares one key and one state (CONTRACT.md §5). `make` / `layer` put the one front
 * (`RateLimiter.make`) over it (`layerFile` with the policies of a file, `layerConfig` with options read
 * from `Config`); `makeStore` / `layerStore` give the bare store to wrappers, and `makeStoreOn` /
 * `layerStoreShared` build it over a shared connection (`RedisClient`).
 *
 * - Validation: the store does none. The front checks every call (policy, then key, then amounts) and
 *   raises `PolicyNotFound` / `OperationNotSupported` / `InvalidArgument`; the store's bound operations
 *   take those checked arguments. Policies written in code are validated once, when the store is built
 *   (`PolicySet.from`): a bad one fails with `PolicyError`.
 * - Keys: a limiter or budget key is `prefix:key` (the wire's key; the prefix defaults to the policy
 *   name). An admitter keeps its held leases and its ceiling state in `{prefix}#leases` / `{prefix}#guard`
 *   and a unified admitter's rate keys in `{prefix}:key`: one hash tag, so one admission is one script
 *   in one cluster slot.
 * - Admin blocks (`RateLimiterAdmin.block`): a block lives beside the key's state, in its cluster slot
 *   (`prefix:key` with a hash tag: `prefix:key:block`; else `{prefix:key}:block`), holding the block's
 *   end (epoch-ms) and expiring then. Every script that decides or reads the key (check, `checkMany`,
 *   `checkAll`, debit, peek, forecast, the admin's penalize / reward replies) reads it in the same call
 *   (one `GET`, no extra round trip): a blocked key is denied with `resetAt` = the block's end, remaining 0,
 *   nothing written. Other ThrottleKit clients calling the core scripts with one key share the state but do
 *   not honour blocks; a unified admitter's rate axis does not read them (the admin does not serve it).
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
 * - `distributedConcurrency` policies (through `make`, `layer`, `makeStore`, `layerStore` and
 *   `layerStoreShared`): admitted in this process against this node's share of one fleet ceiling, with a
 *   heartbeat fiber per policy to the ThrottleKit core's coordinator hash in Redis (`FleetAdmission`);
 *   `nodeId` names the node (default `<hostname>#<pid>`). Their leases are this process's. `makeStoreOn`
 *   (no scope for the fiber) serves them as plain concurrency admitters held in Redis.
 * - Insurance (`insurance`, since 0.3.0): while Redis is unreachable, limiter checks and meter debits are
 *   decided in this process against its share of each limit (`Decision.degraded`), and go back to Redis
 *   by themselves once it answers a PING (see `Insurance`).
 * - Fair-escrow policies keep their tenants in this process, as the ThrottleKit core's server does (so
 *   their `maxKeys` applies); a `federatedFairEscrow` policy's pool is the hash at `prefix:key` (default
 *   `tk:rfp:<policy>`), in the core's layout, shared by every server of every region.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import * as RedisConcurrencyCoordinator from "../coordinator/RedisConcurrencyCoordinator.js"
import { Admission, type Decision, Forecast, fromData } from "../Decision.js"
import { BackendError, InvalidArgument, type RateLimiterError, ServiceUnavailable } from "../Errors.js"
import {
  type AdmitterPolicy,
  type FairPolicy,
  type LimiterPolicy,
  type MeterPolicy,
  type Policy,
  storeKey
} from "../Policy.js"
import * as PolicyFile from "../PolicyFile.js"
import { type PolicyError, PolicySet } from "../PolicySet.js"
import * as CallTemplate from "../redis/CallTemplate.js"
import * as CheckBatches from "../redis/CheckBatches.js"
import * as RedisClient from "../redis/RedisClient.js"
import type { RedisConnection, SharedRedis } from "../redis/RedisClient.js"
import * as Replies from "../redis/Replies.js"
import { type ScriptClock, scriptNow } from "../redis/ScriptClock.js"
import {
  type BatchCall,
  batchCall,
  type EvalArgs,
  evalArgs,
  type Reply,
  type ScriptCall,
  type ScriptRunner
} from "../redis/ScriptRunner.js"
import { type Named, type Script, type ScriptCatalog, sha1Hex } from "../redis/Scripts.js"
import { blockKeyOf, slotOf } from "../redis/Slots.js"
import { scriptsOf } from "../redis/StrategyScripts.js"
import { type FrontOptions, make as makeFront, RateLimiter, type RateLimiterService } from "../services/RateLimiter.js"
import {
  type AcquireOptions,
  type BoundAdmin,
  type BoundAdmitter,
  type BoundFair,
  type BoundLimiter,
  type BoundMeter,
  type CheckAll,
  type HeartbeatResult,
  type LocalStore,
  Store,
  unsupported
} from "../services/RateLimiterStore.js"
import * as FairEscrow from "./fair/FairEscrow.js"
import * as RedisRegionPool from "./fair/RedisRegionPool.js"
import * as FleetAdmission from "./FleetAdmission.js"
import * as Insurance from "./Insurance.js"

/**
 * Options of the Redis door (`heartbeatIntervalMs` and `overCapacity` are the front's: how often `admit`
 * renews its leases, and what a cost above a capacity gets).
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisBackendOptions extends FrontOptions {
  /**
   * The policies to serve: a `PolicySet` (from `PolicyFile.load`/`PolicyFile.parse`/`PolicySet.make`), or policies
   * written in code, which are validated like a file's (a bad one fails with `PolicyError`).
   */
  readonly policies: PolicySet | Iterable<Policy>
  /**
   * A URL (plain, or `Redacted` when it holds a password), ioredis options, or `{ client }` (an existing
   * client, left open when the scope closes).
   */
  readonly redis: RedisConnection
  /** Whose clock decides: Redis's (default) or Effect's `Clock`. */
  readonly clock?: ScriptClock
  /** Bound on every Redis call, in ms (default 1000). */
  readonly timeoutMs?: number
  /**
   * A deployment's namespace: every key becomes `<keyPrefix>:<key>`, so several deployments can share one
   * Redis or cluster (see `RedisClientOptions`).
   */
  readonly keyPrefix?: string
  /**
   * Replicas that must acknowledge a consuming call before it answers (Redis `WAIT`; default 0). See
   * `RedisClientOptions` for what it buys in a failover and what it costs.
   */
  readonly replicaAcks?: number
  /** Lease TTL in ms (default 2000): a lease not renewed within it is reclaimed as dropped. */
  readonly leaseTtlMs?: number
  /**
   * This process's id among the nodes of a `distributedConcurrency` policy (default `<hostname>#<pid>`);
   * unique per process, or the fleet's shares go wrong.
   *
   * @since 0.3.0
   */
  readonly nodeId?: string
  /**
   * Insurance while Redis is unreachable: this process decides limiter checks and meter debits alone
   * against its share of each limit (`{ instances: N }` or `{ share: s }`), marks those decisions
   * `degraded`, and goes back to Redis by itself once a PING answers (see `Insurance`). Absent: a call
   * fails with `ServiceUnavailable` while Redis is down.
   *
   * @since 0.3.0
   */
  readonly insurance?: Insurance.InsuranceOptions
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
  /** The debit's prebuilt call (the hot path), when the script's shape allows one. */
  readonly debitCall: CallTemplate.CallTemplate | undefined
  /** The read-only scripts on the debit's key and state. */
  readonly peek: Script
  readonly forecast: Script
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

interface FairEntry {
  readonly kind: "fair"
  readonly policy: FairPolicy
  /** The region pool's grant script, for a federated fair escrow. */
  readonly grant: Script | undefined
}

type Entry = LimiterEntry | MeterEntry | AdmitterEntry | FairEntry

const configError = (detail: string) => new BackendError({ backend: "redis", code: "CONFIG", detail })

const compile = (catalog: ScriptCatalog, policy: Policy, keyPrefix: string): Effect.Effect<Entry, BackendError> => {
  const need = (strategy: string, role: string) => {
    const script = catalog.find(strategy, role)
    return script === undefined
      ? Effect.fail(configError(`policy ${JSON.stringify(policy.name)}: no ${strategy}.${role} script in vendor/lua`))
      : Effect.succeed(script)
  }
  switch (policy.kind) {
    case "limiter":
      return Effect.gen(function*() {
        // The scripts serving the strategy: a quota's are not named after its kind (see StrategyScripts).
        const { params, strategy } = scriptsOf(policy.strategy)
        const check = yield* need(strategy, "check")
        return {
          kind: "limiter",
          policy,
          params,
          check,
          checkCall: yield* CallTemplate.make(check, params),
          peek: yield* need(strategy, "peek"),
          forecast: yield* need(strategy, "forecast")
        }
      })
    case "meter":
      return Effect.gen(function*() {
        const debit = yield* need("tokenBudget", "debit")
        return {
          kind: "meter",
          policy,
          debit,
          debitCall: yield* CallTemplate.make(debit, { budget: policy.budget, windowMs: policy.windowMs }, "tokens"),
          peek: yield* need("tokenBudget", "peek"),
          forecast: yield* need("tokenBudget", "forecast")
        }
      })
    case "admitter": {
      const tag = `${keyPrefix}{${policy.prefix === "" ? policy.name : policy.prefix}}`
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
      const rate = policy.rate === undefined ? undefined : scriptsOf(policy.rate)
      return Effect.all({
        acquire: rate === undefined ? need("concurrency", "acquire") : need(rate.strategy, "admit"),
        release: need("concurrency", "release"),
        renew: need("concurrency", "renew")
      }).pipe(Effect.map((s): Entry => ({
        kind: "admitter",
        policy,
        params: rate === undefined ? concurrency : { ...rate.params, ...concurrency },
        ...s,
        keys: { leases, guard: `${tag}#guard` },
        ratePrefix: policy.rate === undefined ? undefined : tag,
        leaseTag: sha1Hex(leases).slice(0, 8)
      })))
    }
    case "fair":
      return policy.federation === undefined
        ? Effect.succeed({ kind: "fair", policy, grant: undefined })
        : Effect.map(need("regionFairPool", "grant"), (grant): Entry => ({ kind: "fair", policy, grant }))
  }
}

/** Every policy's entry by name, and the admitters by lease tag (two sharing a tag is a config error). */
const compileAll = (
  catalog: ScriptCatalog,
  policies: PolicySet,
  keyPrefix: string
): Effect.Effect<
  { readonly entries: ReadonlyMap<string, Entry>; readonly admitters: ReadonlyMap<string, AdmitterEntry> },
  BackendError
> =>
  Effect.gen(function*() {
    const entries = new Map<string, Entry>()
    for (const policy of policies) entries.set(policy.name, yield* compile(catalog, policy, keyPrefix))
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
    return { entries, admitters }
  })

/** The fault of an operation bound to a policy this store was not built with (only reachable by bypassing the front). */
const foreign = (policy: Policy) =>
  Effect.fail(configError(`policy ${JSON.stringify(policy.name)} is not one of this store's ${policy.kind} policies`))

const MAX_LEASE_ID_DRAWS = 4

/**
 * The KEYS of a script on a limiter's or budget's state key: the key and its admin block's key (in its
 * cluster slot). Every script that reads a key's state for a decision reads its block too, in the same call.
 */
const stateKeys = (key: string): Named => ({ key, block: blockKeyOf(key) })

/**
 * Options of the Redis store over a shared connection (`RedisClient`): the connection and its bound are
 * the connection's.
 *
 * @since 0.2.0
 * @category models
 */
export type RedisStoreOptions = Omit<RedisBackendOptions, "redis" | "timeoutMs" | "keyPrefix" | "replicaAcks">

/**
 * Builds the Redis store: validates the policies, loads and compiles the scripts, and connects (or adopts
 * the given client) in the given scope. Its operations take the front's checked arguments.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore = (
  options: RedisBackendOptions
): Effect.Effect<LocalStore, PolicyError | ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    const policies = yield* PolicySet.from(options.policies)
    const redis = yield* RedisClient.make(options.redis, {
      timeoutMs: options.timeoutMs,
      keyPrefix: options.keyPrefix,
      replicaAcks: options.replicaAcks
    })
    return yield* insured(
      redis,
      yield* withFleet(redis, yield* makeStoreOn(redis, { ...options, policies }), options),
      options
    )
  })

/** A PING, within the connection's bound: whether Redis answers (the insurance's probe). */
const ping = (redis: SharedRedis): Effect.Effect<void, ServiceUnavailable> => {
  const down = (reason: string) => new ServiceUnavailable({ service: "redis", reason })
  return Effect.tryPromise({
    try: () => redis.client.ping(),
    catch: (cause) => down(`PING failed: ${cause instanceof Error ? cause.message : String(cause)}`)
  }).pipe(
    Effect.timeoutFail({ duration: redis.runner.timeoutMs, onTimeout: () => down("PING timed out") }),
    Effect.asVoid
  )
}

/** `store` with its insurance (`Insurance.make`, probing with a PING), or as it is without one. */
const insured = (
  redis: SharedRedis,
  store: LocalStore,
  options: Pick<RedisBackendOptions, "insurance">
): Effect.Effect<LocalStore, BackendError, Scope.Scope> =>
  options.insurance === undefined
    ? Effect.succeed(store)
    : Insurance.make(store, { ...options.insurance, probe: ping(redis) })

/**
 * A unified `distributedConcurrency` policy's rate axis: the strategy's wire check on `prefix:key`, as a
 * plain limiter's (so its state is shared with every ThrottleKit client of that key).
 */
const fleetRateCheck =
  (redis: SharedRedis, clock: ScriptClock | undefined) =>
  (policy: AdmitterPolicy): FleetAdmission.RateCheck | undefined => {
    if (policy.rate === undefined) return undefined
    const { params, strategy } = scriptsOf(policy.rate)
    const script = redis.scripts.find(strategy, "check")
    if (script === undefined) {
      const missing = configError(`policy ${JSON.stringify(policy.name)}: no ${strategy}.check script in vendor/lua`)
      return () => Effect.fail(missing)
    }
    const now = scriptNow(clock)
    const prefix = policy.prefix
    return (key, cost) =>
      Effect.flatMap(now, (at) =>
        Effect.flatMap(
          redis.runner.prepare(script, stateKeys(redis.keyPrefix + storeKey(prefix, key)), {
            ...params,
            now: at,
            cost
          }),
          (call) => redis.runner.runDecoded(call.script, evalArgs(call), Replies.decisionOf)
        ))
  }

/**
 * `store` with its `distributedConcurrency` policies admitted in this process against their fleet share
 * (`FleetAdmission`), heartbeating to the coordinator on the same connection; `store` itself without such
 * policies. The heartbeat fibers live in the scope.
 */
const withFleet = (
  redis: SharedRedis,
  store: LocalStore,
  options: Pick<RedisBackendOptions, "clock" | "nodeId">
): Effect.Effect<LocalStore, BackendError, Scope.Scope> => {
  let fleet = false
  for (const policy of store.policies) if (policy.kind === "admitter" && policy.distributed !== undefined) fleet = true
  if (!fleet) return Effect.succeed(store)
  return Effect.flatMap(
    RedisConcurrencyCoordinator.makeOn(redis, options.clock === undefined ? {} : { clock: options.clock }),
    (coordinator) =>
      FleetAdmission.wrap(store, {
        coordinator,
        nodeId: options.nodeId ?? FleetAdmission.defaultNodeId(),
        rateCheck: fleetRateCheck(redis, options.clock)
      })
  )
}

/** How many ARGV values each dimension of a `multi.check` takes: kind, cost, then six parameters. */
const MULTI_STRIDE = 8

/** The ARGV names of a single-key consuming script that are not its parameters. */
const notParams = new Set(["now", "cost", "tokens", "fence"])

/**
 * A policy's part of a `multi.check` ARGV after the cost: its kind (the strategy whose check, or the
 * budget whose debit, it runs), then the parameters of that single-key script in its ARGV order, padded
 * with "0" (so a multi-check runs each dimension exactly as its own script would).
 */
const multiPart = (entry: LimiterEntry | MeterEntry): { readonly kind: string; readonly params: Array<string> } => {
  const script = entry.kind === "limiter" ? entry.check : entry.debit
  const values: Named = entry.kind === "limiter"
    ? entry.params
    : { budget: entry.policy.budget, windowMs: entry.policy.windowMs }
  const params = script.argv.filter((name) => !notParams.has(name)).map((name) => String(values[name]))
  while (params.length < MULTI_STRIDE - 2) params.push("0")
  return { kind: script.strategy, params }
}

/**
 * Why a multi-check's Redis keys cannot run as one script, or undefined: two dimensions on one key
 * (policies sharing a prefix), or, on a cluster, keys in different slots.
 */
const multiKeysFault = (keys: ReadonlyArray<string>, cluster: boolean): InvalidArgument | undefined => {
  const seen = new Map<string, number>()
  for (let i = 0; i < keys.length; i++) {
    const first = seen.get(keys[i]!)
    if (first !== undefined) {
      return new InvalidArgument({
        argument: `checks[${i}]`,
        reason: `addresses the Redis key of checks[${first}] (their policies share a prefix): ` +
          "a multi-check takes each key once"
      })
    }
    seen.set(keys[i]!, i)
  }
  if (!cluster) return undefined
  const slot = slotOf(keys[0]!)
  for (let i = 1; i < keys.length; i++) {
    const other = slotOf(keys[i]!)
    if (other !== slot) {
      return new InvalidArgument({
        argument: `checks[${i}].key`,
        reason: `on a Redis Cluster the keys of one multi-check must share a slot, as one script runs them: ` +
          `${JSON.stringify(keys[i])} is in slot ${other}, ${JSON.stringify(keys[0])} in slot ${slot}; ` +
          "put one hash tag {…} in every key (e.g. \"{tenant-7}:alice\" and \"{tenant-7}\"), so that " +
          "only the tag is hashed"
      })
    }
  }
  return undefined
}

/**
 * Builds the Redis store over a shared connection (its client, scripts and runner): validates the
 * policies and compiles the scripts. The connection stays its owner's.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStoreOn = (
  redis: SharedRedis,
  options: RedisStoreOptions
): Effect.Effect<LocalStore, PolicyError | BackendError> =>
  Effect.gen(function*() {
    const policies = yield* PolicySet.from(options.policies)
    const ttlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS
    const { admitters, entries } = yield* compileAll(redis.scripts, policies, redis.keyPrefix)
    const deployment = redis.keyPrefix
    /** A limiter's or budget's key in Redis: the deployment's prefix, then the policy's `prefix:key`. */
    const keyOf = deployment === ""
      ? storeKey
      : (prefix: string, key: string) => deployment + storeKey(prefix, key)
    /** A limiter's or budget's KEYS: its state key and, beside it in its slot, its admin block's key. */
    const keysOf = (prefix: string, key: string): Named => stateKeys(keyOf(prefix, key))
    const runner: ScriptRunner = redis.runner

    /** The `now` ARGV: 0 (the Redis clock) or Effect's clock, which must be a real instant. */
    const now = scriptNow(options.clock)
    const redisClock = options.clock !== "effect"

    const runDecision = (call: ScriptCall) => runner.runDecoded(call.script, evalArgs(call), Replies.decisionOf)
    /** The script that decides many checks of one policy in one run (coalesced checks, `checkMany`). */
    const manyScript = redis.scripts.find("many", "check")
    const cluster = redis.client.isCluster

    const limiter = (policy: LimiterPolicy): BoundLimiter => {
      const entry = entries.get(policy.name)
      if (entry === undefined || entry.kind !== "limiter") {
        return {
          check: () => foreign(policy),
          checkMany: () => foreign(policy),
          peek: () => foreign(policy),
          forecast: () => foreign(policy)
        }
      }
      const { params, policy: { prefix } } = entry
      const template = entry.checkCall

      // Checks in flight together run many to a `many.check` (CheckBatches); a door on the Effect clock (or
      // a policy without a prebuilt call) sends each check on its own.
      const batching = template === undefined || manyScript === undefined
        ? undefined
        : { runner, single: template, many: manyScript, part: multiPart(entry), cluster }
      const coalesced = batching === undefined || !redisClock ? undefined : CheckBatches.coalescer(batching)

      // The hot path: one Effect (the script call and the reply's decoding), chosen here, once. It carries
      // no span of its own: a span per call cost about as much CPU as the whole raw EVALSHA it wraps (see
      // bench/). Callers that want one per check wrap it (the HTTP middleware does).
      const check: BoundLimiter["check"] = template === undefined
        ? (key, cost) =>
          Effect.flatMap(now, (at) =>
            Effect.flatMap(
              runner.prepare(entry.check, keysOf(prefix, key), { ...params, now: at, cost }),
              runDecision
            ))
        : redisClock
        ? coalesced === undefined
          ? (key, cost) =>
            runner.runDecoded(template.script, template.args(keyOf(prefix, key), 0, cost), Replies.decisionOf)
          : (key, cost) => coalesced(keyOf(prefix, key), cost)
        : (key, cost) =>
          Effect.flatMap(now, (at) =>
            runner.runDecoded(template.script, template.args(keyOf(prefix, key), at, cost), Replies.decisionOf))

      // A batch runs its keys many to a `many.check` (one node: up to 128 keys a run; a cluster: a run per
      // slot), all in one pipeline per node, and its replies are decoded in one plain loop.
      const checkManyAt = (keys: ReadonlyArray<string>, cost: number, at: number) => {
        if (batching === undefined) {
          return Effect.flatMap(
            Effect.forEach(keys, (key) =>
              Effect.map(
                runner.prepare(entry.check, keysOf(prefix, key), { ...params, now: at, cost }),
                (call): BatchCall =>
                  batchCall(call.script, evalArgs(call))
              )),
            (calls) => Effect.flatMap(runner.runBatch(calls), Replies.decisionsOf)
          )
        }
        const plan = CheckBatches.planMany(batching, keys.map((key) => keyOf(prefix, key)), cost, at)
        return Effect.flatMap(runner.runBatch(plan.calls), plan.decode)
      }
      // No span of its own, as `check` (callers that want one wrap it): effect's native span keeps each
      // call's outcome in an object V8 comes to allocate in the old generation, where it outlives the young
      // collections; with 100 decisions an outcome, a probe of checkMany(100) spent 45–100 µs a call in the
      // garbage collector with the span, 8–13 µs without.
      const checkMany: BoundLimiter["checkMany"] = (keys, cost) =>
        Effect.flatMap(now, (at) => checkManyAt(keys, cost, at))

      const peek = Effect.fn("RedisBackend.peek")(
        function*(key: string): Effect.fn.Return<Decision, RateLimiterError> {
          const call = yield* runner.prepare(entry.peek, keysOf(prefix, key), { ...params, now: yield* now })
          return yield* runDecision(call)
        }
      )

      const forecast = Effect.fn("RedisBackend.forecast")(
        function*(key: string, cost: number): Effect.fn.Return<Forecast, RateLimiterError> {
          const call = yield* runner.prepare(entry.forecast, keysOf(prefix, key), {
            ...params,
            now: yield* now,
            cost
          })
          const data = yield* Effect.flatMap(runner.run(call), Replies.forecast)
          return new Forecast(data, true)
        }
      )

      return { check, checkMany, peek, forecast }
    }

    const meter = (policy: MeterPolicy): BoundMeter => {
      const entry = entries.get(policy.name)
      if (entry === undefined || entry.kind !== "meter") {
        return {
          debit: () => foreign(policy),
          peek: () => foreign(policy),
          forecast: () => foreign(policy)
        }
      }
      const { budget, prefix, windowMs } = entry.policy
      const template = entry.debitCall
      // As a limiter's check: debits in flight together run many to a `many.check` (on the Redis clock),
      // each one on its own otherwise; no span per call.
      const coalesced = template === undefined || manyScript === undefined || !redisClock
        ? undefined
        : CheckBatches.coalescer({ runner, single: template, many: manyScript, part: multiPart(entry), cluster })
      const debit: BoundMeter["debit"] = coalesced !== undefined
        ? (key, tokens) => coalesced(keyOf(prefix, key), tokens)
        : template !== undefined
        ? (key, tokens) =>
          Effect.flatMap(now, (at) =>
            runner.runDecoded(template.script, template.args(keyOf(prefix, key), at, tokens), Replies.decisionOf))
        : (key, tokens) =>
          Effect.flatMap(now, (at) =>
            Effect.flatMap(
              runner.prepare(entry.debit, keysOf(prefix, key), { budget, windowMs, now: at, tokens }),
              runDecision
            ))
      // Read-only: the same key and state as the debit; nothing written, no TTL touched.
      const peek = Effect.fn("RedisBackend.peekBudget")(
        function*(key: string): Effect.fn.Return<Decision, RateLimiterError> {
          const call = yield* runner.prepare(entry.peek, keysOf(prefix, key), {
            budget,
            windowMs,
            now: yield* now
          })
          return yield* runDecision(call)
        }
      )
      const forecast = Effect.fn("RedisBackend.forecastBudget")(
        function*(key: string, tokens: number): Effect.fn.Return<Forecast, RateLimiterError> {
          const call = yield* runner.prepare(entry.forecast, keysOf(prefix, key), {
            budget,
            windowMs,
            now: yield* now,
            tokens
          })
          const data = yield* Effect.flatMap(runner.run(call), Replies.forecast)
          return new Forecast(data, true)
        }
      )
      return { debit, peek, forecast }
    }

    const admitter = (policy: AdmitterPolicy): BoundAdmitter => {
      const entry = entries.get(policy.name)
      if (entry === undefined || entry.kind !== "admitter") {
        return {
          acquire: () =>
            foreign(policy)
        }
      }
      const mintLeaseId = Effect.sync(() =>
        entry.leaseTag + randomBytes(16).toString("hex")
      )
      const acquire = Effect.fn("RedisBackend.acquire")(
        function*(key: string, acquireOptions: AcquireOptions): Effect.fn.Return<Admission, RateLimiterError> {
          const keys: Named = entry.ratePrefix === undefined
            ? entry.keys
            : { ...entry.keys, key: storeKey(entry.ratePrefix, key) }
          const at = yield* now
          for (let draw = 0; draw < MAX_LEASE_ID_DRAWS; draw++) {
            const leaseId = yield* mintLeaseId
            const call = yield* runner.prepare(entry.acquire, keys, {
              ...entry.params,
              now: at,
              leaseId,
              ttlMs,
              cost: acquireOptions.cost
            })
            const answer = yield* Effect.flatMap(runner.run(call), Replies.admission).pipe(
              Effect.onInterrupt(() => releaseAbandoned(entry, leaseId))
            )
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
      return { acquire }
    }

    /**
     * Releases the lease an interrupted acquire may have taken (its caller is gone and will never release
     * it). The release follows the acquire on the same connection, so Redis runs it after the acquire:
     * it frees the slot when the acquire took one, and changes nothing when the acquire was fenced or
     * denied. Sent without waiting; a failure leaves the lease to its TTL.
     */
    const releaseAbandoned = (entry: AdmitterEntry, leaseId: string): Effect.Effect<void> =>
      runner.prepare(entry.release, entry.keys, { ...entry.params, now: 0, leaseId, dropped: 0 }).pipe(
        Effect.flatMap((call) =>
          Effect.sync(() => runner.runCallback(call.script, evalArgs(call), () => {}, () => {}))
        ),
        Effect.ignore
      )

    /**
     * A fair escrow's tenants live in this process, as on the core's server; a federated one's pool is the
     * hash at the deployment's prefix, then its `prefix:key`, shared by every server of every region.
     */
    const fairs = new Map<string, BoundFair>()
    for (const entry of entries.values()) {
      if (entry.kind !== "fair") continue
      const { federation, fairEscrow: { limit, windowMs } } = entry.policy
      fairs.set(
        entry.policy.name,
        federation === undefined || entry.grant === undefined
          ? FairEscrow.local(entry.policy)
          : FairEscrow.federated(
            entry.policy,
            federation.region,
            RedisRegionPool.make({
              runner,
              grant: entry.grant,
              key: keyOf(federation.prefix, federation.key),
              limit,
              windowMs,
              now
            })
          )
      )
    }
    const fair = (policy: FairPolicy): BoundFair => fairs.get(policy.name) ?? { check: () => foreign(policy) }

    // The multi-check: one `multi.check` script over every dimension's wire key (read all, decide, then
    // write all or nothing; one `TIME` for all), fenced like every consuming script.
    const multiScript = redis.scripts.find("multi", "check")
    const multiParts = new Map<string, ReturnType<typeof multiPart>>()
    for (const entry of entries.values()) {
      if (entry.kind === "limiter" || entry.kind === "meter") multiParts.set(entry.policy.name, multiPart(entry))
    }
    // No span of its own, as the single check (a span per call cost as much CPU as the script call).
    const checkAll: CheckAll | undefined = multiScript === undefined ? undefined : (checks) => {
      const count = checks.length
      const keys: Array<string> = []
      // KEYS: every dimension's state key, then each one's block key (in its slot) in the same order.
      const args: EvalArgs = [2 * count]
      for (const { key, policy } of checks) {
        if (!multiParts.has(policy.name)) return foreign(policy)
        keys.push(keyOf(policy.prefix, key))
      }
      const fault = multiKeysFault(keys, cluster)
      if (fault !== undefined) return Effect.fail(fault)
      for (const key of keys) args.push(key)
      for (const key of keys) args.push(blockKeyOf(key))
      // ARGV: now (filled below), the fence (the runner's to fill), then each dimension's part.
      args.push(0, 0)
      for (const { cost, policy } of checks) {
        const part = multiParts.get(policy.name)!
        args.push(part.kind, cost, ...part.params)
      }
      const decode = (reply: Reply) => Replies.multiDecisionsOf(reply, count)
      return redisClock
        ? runner.runDecoded(multiScript, args, decode)
        : Effect.flatMap(now, (at) => {
          args[1 + 2 * count] = at
          return runner.runDecoded(multiScript, args, decode)
        })
    }

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
        const calls = yield* Effect.forEach(
          groups,
          ([entry, ids]) =>
            runner.prepare(entry.renew, entry.keys, { ...entry.params, now: at, ttlMs, "leaseIds...": ids })
        )
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
          live: leaseIds.filter((id) => live.has(id)),
          reclaimed: leaseIds.filter((id) => !live.has(id)),
          nextDeadline
        }
      }
    )

    // The admin scripts: a limiter's strategy's (or a budget's) penalize and reward, and one reset for any
    // key. Looked up when a policy is bound, so a catalog without them serves no admin for that policy.
    const resetScript = redis.scripts.find("key", "reset")
    const blockScript = redis.scripts.find("key", "block")
    const unblockScript = redis.scripts.find("key", "unblock")
    const admin = (policy: Policy): BoundAdmin => {
      const entry = entries.get(policy.name)
      const served = entry?.kind === "limiter"
        ? { strategy: scriptsOf(entry.policy.strategy).strategy, params: entry.params, prefix: entry.policy.prefix }
        : entry?.kind === "meter"
        ? {
          strategy: "tokenBudget",
          params: { budget: entry.policy.budget, windowMs: entry.policy.windowMs },
          prefix: entry.policy.prefix
        }
        : undefined
      const penalizeScript = served === undefined ? undefined : redis.scripts.find(served.strategy, "penalize")
      const peekScript = served === undefined ? undefined : redis.scripts.find(served.strategy, "peek")
      const rewardScript = served === undefined ? undefined : redis.scripts.find(served.strategy, "reward")
      if (
        served === undefined || penalizeScript === undefined || rewardScript === undefined ||
        peekScript === undefined || resetScript === undefined || blockScript === undefined ||
        unblockScript === undefined
      ) {
        const reason = unsupported(
          "the Redis store's admin serves limiters and meters (a unified admitter's rate keys: not yet)"
        )
        return { reset: reason, penalize: reason, reward: reason, block: reason, unblock: reason }
      }
      const { params, prefix } = served
      // What a 1-unit peek sees (after a block or an unblock: the answer of either, as the Memory store's).
      const peekAfter = (key: string) =>
        Effect.flatMap(
          now,
          (at) => Effect.flatMap(runner.prepare(peekScript, keysOf(prefix, key), { ...params, now: at }), runDecision)
        )
      const adjust = (script: Script) => (key: string, units: number) =>
        Effect.flatMap(now, (at) =>
          Effect.flatMap(
            runner.prepare(script, keysOf(prefix, key), { ...params, now: at, units }),
            runDecision
          ))
      return {
        reset: (key) => Effect.asVoid(Effect.flatMap(runner.prepare(resetScript, keysOf(prefix, key), {}), runner.run)),
        penalize: adjust(penalizeScript),
        reward: adjust(rewardScript),
        block: (key, durationMs) =>
          Effect.flatMap(now, (at) =>
            Effect.flatMap(
              runner.prepare(blockScript, { block: blockKeyOf(keyOf(prefix, key)) }, { now: at, durationMs }),
              (call) => Effect.zipRight(runner.run(call), peekAfter(key))
            )),
        unblock: (key) =>
          Effect.flatMap(
            runner.prepare(unblockScript, { block: blockKeyOf(keyOf(prefix, key)) }, {}),
            (call) => Effect.zipRight(runner.run(call), peekAfter(key))
          )
      }
    }

    return {
      _tag: "Local",
      backend: "redis",
      policies,
      limiter,
      meter,
      admitter,
      fair,
      leases: { ttlMs, release, heartbeat },
      ...(checkAll === undefined ? {} : { checkAll }),
      admin
    } satisfies LocalStore
  })

/**
 * The Redis store as a layer, for wrappers (TwoTier, FailMode, the Monitor tap) and `RateLimiter.layer`.
 * The client it creates is closed with the layer (a given `{ client }` is not).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (
  options: RedisBackendOptions
): Layer.Layer<Store, PolicyError | ServiceUnavailable | BackendError> => Layer.scoped(Store, makeStore(options))

/**
 * The Redis store as a layer over the shared connection in context (`RedisClient.layer`), so it can share
 * one connection with e.g. a `RedisCoordinator.layerShared`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStoreShared = (
  options: RedisStoreOptions
): Layer.Layer<Store, PolicyError | BackendError, RedisClient.RedisClient> =>
  Layer.scoped(Store, makeStoreShared(options))

/**
 * `layerStoreShared` as an Effect: the Redis store over the shared connection in context, with its
 * `distributedConcurrency` policies' heartbeat fibers (and its insurance, when asked) in the scope.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeStoreShared = (
  options: RedisStoreOptions
): Effect.Effect<LocalStore, PolicyError | BackendError, RedisClient.RedisClient | Scope.Scope> =>
  Effect.flatMap(
    RedisClient.RedisClient,
    (redis) =>
      Effect.flatMap(
        makeStoreOn(redis, options),
        (store) => Effect.flatMap(withFleet(redis, store, options), (fleet) => insured(redis, fleet, options))
      )
  )

/**
 * Builds the Redis door's `RateLimiter` service: the front over the Redis store. The client and the
 * admission keeper live in the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: RedisBackendOptions
): Effect.Effect<RateLimiterService, PolicyError | ServiceUnavailable | BackendError, Scope.Scope> =>
  Effect.flatMap(makeStore(options), (store) =>
    makeFront(store, {
      ...(options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
      ...(options.overCapacity === undefined ? {} : { overCapacity: options.overCapacity })
    }))

/**
 * The Redis door as a layer. The client it creates is closed with the layer (a given `{ client }` is not).
 * Policies written in code are validated here: a bad one fails the layer with `PolicyError`.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { limit } from "throttlekit-effect"
 * import { RedisBackend } from "throttlekit-effect/redis"
 *
 * // Lua inside a shared Redis: every process connected to it shares the limits. The URL may hold a
 * // password: keep it Redacted.
 * const limits = RedisBackend.layer({
 *   policies: [{
 *     kind: "limiter",
 *     name: "api",
 *     prefix: "api",
 *     maxKeys: 100_000,
 *     strategy: { kind: "gcra", limit: 5, periodMs: 1000, burst: 5 }
 *   }],
 *   redis: Redacted.make("redis://127.0.0.1:6379"),
 *   timeoutMs: 500 // the bound on every Redis call
 * })
 *
 * export const main = limit("api", "user-42").pipe(Effect.provide(limits))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: RedisBackendOptions
): Layer.Layer<RateLimiter, PolicyError | ServiceUnavailable | BackendError> => Layer.scoped(RateLimiter, make(options))

/**
 * The Redis door serving the policies of a config file (YAML or JSON, the reference server's format),
 * built as `layer` builds it. A file that cannot be read or decoded fails the layer with `PolicyError`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFile = (
  path: string,
  options: Omit<RedisBackendOptions, "policies">
): Layer.Layer<RateLimiter, PolicyError | ServiceUnavailable | BackendError> =>
  Layer.scoped(RateLimiter, Effect.flatMap(PolicyFile.load(path), (policies) => make({ ...options, policies })))

/**
 * The Redis door configured from `Config`: the options of `layer`, each a `Config` (`Config.succeed` for
 * a fixed value), e.g. `layerConfig({ policies: Config.succeed(policies), redis:
 * Config.redacted("REDIS_URL") })` (a URL that holds a password stays `Redacted`). A missing or invalid
 * value fails the layer with Effect's `ConfigError`; then it is built as `layer` builds it. A bad policy
 * fails it with this package's `PolicyError` (its own tag, so `catchTag` tells the two apart).
 *
 * @example
 * ```ts
 * import { Config, Effect, Layer } from "effect"
 * import { PolicyFile } from "throttlekit-effect"
 * import { RedisBackend } from "throttlekit-effect/redis"
 *
 * // REDIS_URL may hold a password (redis://:secret@host:6379): it is read redacted and stays so.
 * export const limits = Layer.unwrapEffect(Effect.map(PolicyFile.load("policies.yaml"), (policies) =>
 *   RedisBackend.layerConfig({
 *     policies: Config.succeed(policies),
 *     redis: Config.redacted("REDIS_URL"),
 *     timeoutMs: Config.integer("REDIS_TIMEOUT_MS").pipe(Config.withDefault(1000))
 *   })))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<RedisBackendOptions>
): Layer.Layer<RateLimiter, EffectConfigError.ConfigError | PolicyError | ServiceUnavailable | BackendError> =>
  Layer.scoped(RateLimiter, Effect.flatMap(Config.unwrap(config), make))
