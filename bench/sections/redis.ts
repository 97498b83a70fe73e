/**
 * Redis: a private redis-server on a free port, started by the bench. The Redis door's check (serial and
 * 64 in flight) against raw ioredis EVALSHA of the very same vendored script with the same KEYS and ARGV
 * (the floor: what any wrapper of that script pays at least) and against rate-limiter-flexible's
 * `RateLimiterRedis` on the same Redis. Each side has its own connection; the sides take turns, so they
 * never load Redis at the same time. Keys rotate over 10k.
 *
 * A fourth row, the Effect floor, runs the raw EVALSHA inside `Effect.tryPromise` in the same Effect loop
 * as ours (64 caller fibers in the c64 scenario): what any Effect program pays before a limiter adds
 * anything, so the gap between it and ours is the door's own cost. A fifth c64 row starts a root fiber per
 * call, to show what starting a fiber per request costs on the machine (the runtime's cost, not ours).
 * The last row is `@effect/experimental`'s `RateLimiter.consume` on its Redis store (its own ioredis
 * connection and Lua script, token-bucket: the bench policy, see bench/experimental.ts) on the same Redis,
 * in the same Effect loop as ours: `redis.c64.vsExperimental` (target ≥ 1.5). `redis.c64.p99VsRaw` is
 * ours' p99 over the raw client's at 64 callers (target ≤ 1.2).
 *
 * At 64 callers the door coalesces the checks in flight into `many.check` runs of up to 32 keys
 * (src/redis/CheckBatches.ts), so it sends fewer, larger commands than a raw client calling the contract's
 * script once per decision. The last c64 row is the floor of that path: raw ioredis sending `many.check`
 * over 32 keys, 2 calls in flight (64 decisions), each decision timed as its call
 * (`redis.c64.vsRawBatched`, informational).
 *
 * The multi-check rows (`redis.multi3.*`, serial and 64 in flight): one request counted against three
 * dimensions (a gcra, a fixed-window and a sliding-window policy, the same key), as one `checkAll` (one
 * script, all or nothing) against three `check`s one after another (three round trips, not atomic), on
 * their own door over the same Redis. No target: the ratio is reported.
 */
import { Effect, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { RateLimiterRedis } from "rate-limiter-flexible"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import { storeKey } from "../../src/Policy.js"
import type { LimiterPolicy } from "../../src/Policy.js"
import * as CheckBatches from "../../src/redis/CheckBatches.js"
import * as Replies from "../../src/redis/Replies.js"
import { evalArgs, type Reply } from "../../src/redis/ScriptRunner.js"
import { loadScripts, marshal } from "../../src/redis/Scripts.js"
import { blockKeyOf } from "../../src/redis/Slots.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import {
  MISSING_REDIS_HINT,
  redisServerAvailable,
  type RedisServerHandle,
  startRedisServer
} from "../../test/support/redisServer.js"
import { effectCallers, effectCallersFiberPerCall, effectSerial } from "../effectWorkloads.js"
import { consume, experimentalRedis, limiterOf, verifyConsume } from "../experimental.js"
import {
  CALLERS,
  concurrentCallers,
  measure,
  nowNs,
  type Plan,
  promiseCallers,
  promiseSerial,
  type Result,
  type Workload
} from "../harness.js"
import { benchPolicy, gcraStrategy, keyOf, LIMIT_PER_SEC, POLICY } from "../policies.js"
import { type Comparison, ratio, resultOf, type Section, type SectionOutcome } from "../section.js"

const OURS = "RedisBackend.check"
const RAW = "raw ioredis EVALSHA (same script)"
const RLF = "rate-limiter-flexible Redis.consume"
const FLOOR = "Effect.tryPromise(raw EVALSHA)"
const OURS_FIBER_PER_CALL = "RedisBackend.check, a root fiber per call"
const EXPERIMENTAL = "@effect/experimental consume (Redis store)"
/** The keys of one raw `many.check` call in the batched floor row (the door's full batch). */
const BATCH = CheckBatches.BATCH_SIZE
const RAW_BATCHED = "raw ioredis many.check (32 keys a call, 2 in flight)"
const MULTI = "RedisBackend.checkAll (3 dimensions)"
const SEQUENTIAL = "3 × RedisBackend.check in sequence"

/** The three dimensions of the multi-check rows: limits far above what the bench reaches. */
const multiPolicies: ReadonlyArray<LimiterPolicy> = [
  { ...benchPolicy, name: "m-gcra", prefix: "m-gcra" },
  {
    kind: "limiter",
    name: "m-window",
    prefix: "m-window",
    maxKeys: 100_000,
    strategy: { kind: "fixedWindow", limit: LIMIT_PER_SEC, windowMs: 1000 }
  },
  {
    kind: "limiter",
    name: "m-sliding",
    prefix: "m-sliding",
    maxKeys: 100_000,
    strategy: { kind: "slidingWindow", limit: LIMIT_PER_SEC, windowMs: 1000, buckets: 10 }
  }
]

/**
 * The multi-check rows, serial and 64 in flight: `checkAll` of three dimensions against three checks in
 * sequence, each on its own door (own connection), both verified allowed first.
 */
const multiRows = async (url: string, plan: Plan): Promise<Array<Result>> => {
  const runtime = ManagedRuntime.make(RedisBackend.layer({ policies: multiPolicies, redis: url }))
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const dims = (i: number) => multiPolicies.map((p) => ({ policy: p.name, key: keyOf(i) }))
    const multi = (i: number) => limiter.checkAll(dims(i))
    const sequential = (i: number) =>
      Effect.flatMap(
        limiter.check("m-gcra", keyOf(i)),
        () => Effect.flatMap(limiter.check("m-window", keyOf(i)), () => limiter.check("m-sliding", keyOf(i)))
      )
    const verifyMulti = () =>
      runtime.runPromise(multi(0)).then((verdict) => {
        if (!verdict.allowed || verdict.decisions.length !== 3) throw new Error(`${MULTI}: not allowed`)
      })
    const verifySequential = () =>
      runtime.runPromise(sequential(0)).then((decision) => {
        if (!decision.allowed) throw new Error(`${SEQUENTIAL}: the third check was denied`)
      })
    const serial = await measure("redis.multi3.serial", [
      { ...effectSerial(MULTI, runtime.runPromise, multi), verify: verifyMulti },
      { ...effectSerial(SEQUENTIAL, runtime.runPromise, sequential), verify: verifySequential }
    ], plan)
    const c64 = await measure("redis.multi3.c64", [
      { ...effectCallers(MULTI, runtime.runFork, multi), verify: verifyMulti },
      { ...effectCallers(SEQUENTIAL, runtime.runFork, sequential), verify: verifySequential }
    ], plan)
    return [...serial, ...c64]
  } finally {
    await runtime.dispose()
  }
}

const connect = async (url: string): Promise<Redis> => {
  const client = new Redis(url, { lazyConnect: true })
  await client.connect()
  return client
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  if (!redisServerAvailable()) {
    return {
      results: [],
      comparisons: [],
      skipped: [
        { name: "redis.c64.vsRaw", reason: `skipped: ${MISSING_REDIS_HINT}` },
        { name: "redis.c64.vsRlf", reason: `skipped: ${MISSING_REDIS_HINT}` },
        { name: "redis.c64.vsExperimental", reason: `skipped: ${MISSING_REDIS_HINT}` },
        { name: "redis.c64.p99VsRaw", reason: `skipped: ${MISSING_REDIS_HINT}` }
      ]
    }
  }
  const server: RedisServerHandle = await startRedisServer()
  const clients: Array<Redis> = []
  const runtime = ManagedRuntime.make(RedisBackend.layer({ policies: [benchPolicy], redis: server.url }))
  const experimental = experimentalRedis(server.url)
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const experimentalLimiter = await limiterOf(experimental)
    const verifyExperimental = () => verifyConsume(experimental, experimentalLimiter, keyOf(0))

    // The floor: the same script, KEYS (the state key and its block key) and ARGV as the Redis door sends,
    // straight through ioredis.
    const catalog = await Effect.runPromise(loadScripts())
    const script = catalog.find("gcra", "check")
    if (script === undefined) throw new Error("vendor/lua has no gcra check script")
    const blocks = script.keys.length === 2
    const stateKeys = (key: string) => blocks ? [key, blockKeyOf(key)] : [key]
    const { kind: _kind, ...params } = gcraStrategy
    const argv = await Effect.runPromise(marshal(script, "argv", { ...params, now: 0, cost: 1 }))
    const raw = await connect(server.url)
    clients.push(raw)
    await raw.script("LOAD", script.text)
    const rawCheck = (i: number) =>
      raw.evalsha(
        script.sha1,
        ...evalArgs({ script, keys: stateKeys(storeKey(benchPolicy.prefix, keyOf(i))), argv })
      ) as Promise<Reply>

    // The floor of the door's coalesced path: the same 64 decisions in flight as 2 callers each sending
    // `many.check` over 32 keys (what the door sends for a full batch), by raw ioredis on its own connection.
    const many = catalog.find("many", "check")
    if (many === undefined) throw new Error("vendor/lua has no many.check script")
    const rawBatched = await connect(server.url)
    clients.push(rawBatched)
    await rawBatched.script("LOAD", many.text)
    const part: CheckBatches.ManyPart = {
      kind: "gcra",
      params: script.argv.filter((name) => !["now", "cost", "fence"].includes(name)).map((name) =>
        String((params as Record<string, unknown>)[name])
      ).concat(["0", "0", "0"]).slice(0, 6)
    }
    const rawBatch = (first: number) => {
      const keys = Array.from({ length: BATCH }, (_, j) => storeKey(benchPolicy.prefix, keyOf(first + j)))
      return rawBatched.evalsha(many.sha1, ...CheckBatches.manyArgs(part, keys, () => 1, 0)) as Promise<Reply>
    }
    const rawBatchedCallers = concurrentCallers(RAW_BATCHED, false, async (deadline, next, record) => {
      let t = nowNs()
      while (t < deadline) {
        await rawBatch(next() * BATCH)
        const t1 = nowNs()
        for (let j = 0; j < BATCH; j++) record(t1 - t)
        t = t1
      }
    }, CALLERS / BATCH)
    const verifyRawBatched = () =>
      rawBatch(0).then((reply) => {
        const decisions = Replies.decisionsIn(reply, BATCH, many.name)
        if (!Array.isArray(decisions) || decisions.some((d) => !d.allowed)) {
          throw new Error(`${RAW_BATCHED}: the first batch was not all allowed`)
        }
      })

    const rlfClient = await connect(server.url)
    clients.push(rlfClient)
    const rlf = new RateLimiterRedis({
      storeClient: rlfClient,
      points: LIMIT_PER_SEC,
      duration: 1,
      keyPrefix: "rlf"
    })

    const verifyOurs = () =>
      runtime.runPromise(limiter.check(POLICY, keyOf(0))).then((decision) => {
        if (!decision.allowed) throw new Error(`${OURS}: the first check was denied`)
      })
    const verifyRaw = () =>
      rawCheck(0).then((reply) =>
        Effect.runPromise(Replies.decisionOf(reply)).then((decision) => {
          if (!decision.allowed) throw new Error(`${RAW}: the first check was denied`)
        })
      )
    const verifyRlf = () => rlf.consume(keyOf(0)).then(() => undefined)

    const results: Array<Result> = []
    const serial: ReadonlyArray<Workload> = [
      { ...effectSerial(OURS, runtime.runPromise, (i) => limiter.check(POLICY, keyOf(i))), verify: verifyOurs },
      { ...promiseSerial(RAW, false, rawCheck), verify: verifyRaw },
      { ...promiseSerial(RLF, false, (i) => rlf.consume(keyOf(i))), verify: verifyRlf },
      effectSerial(FLOOR, Effect.runPromise, (i) => Effect.tryPromise(() => rawCheck(i)), false),
      {
        ...effectSerial(EXPERIMENTAL, experimental.runPromise, (i) => consume(experimentalLimiter, keyOf(i)), false),
        verify: verifyExperimental
      }
    ]
    results.push(...(await measure("redis.serial", serial, plan)))
    const c64: ReadonlyArray<Workload> = [
      { ...effectCallers(OURS, runtime.runFork, (i) => limiter.check(POLICY, keyOf(i))), verify: verifyOurs },
      { ...promiseCallers(RAW, false, rawCheck), verify: verifyRaw },
      { ...promiseCallers(RLF, false, (i) => rlf.consume(keyOf(i))), verify: verifyRlf },
      effectCallers(FLOOR, Effect.runFork, (i) => Effect.tryPromise(() => rawCheck(i)), false),
      effectCallersFiberPerCall(OURS_FIBER_PER_CALL, runtime.runFork, (i) => limiter.check(POLICY, keyOf(i))),
      {
        ...effectCallers(EXPERIMENTAL, experimental.runFork, (i) => consume(experimentalLimiter, keyOf(i)), false),
        verify: verifyExperimental
      },
      { ...rawBatchedCallers, verify: verifyRawBatched }
    ]
    results.push(...(await measure("redis.c64", c64, plan)))
    results.push(...(await multiRows(server.url, plan)))

    return {
      results,
      comparisons: [
        ratio(results, "redis.c64.vsRaw", "redis.c64", OURS, RAW, { target: { op: ">=", value: 1 }, headline: true }),
        ratio(results, "redis.c64.vsRlf", "redis.c64", OURS, RLF, { target: { op: ">=", value: 1.2 }, headline: true }),
        ratio(results, "redis.c64.vsExperimental", "redis.c64", OURS, EXPERIMENTAL, {
          target: { op: ">=", value: 1.5 },
          headline: true
        }),
        p99Ratio(results),
        ratio(results, "redis.serial.vsExperimental", "redis.serial", OURS, EXPERIMENTAL),
        ratio(results, "redis.c64.vsEffectFloor", "redis.c64", OURS, FLOOR),
        ratio(results, "redis.c64.effectFloorVsRaw", "redis.c64", FLOOR, RAW),
        ratio(results, "redis.c64.fiberPerCall.vsRaw", "redis.c64", OURS_FIBER_PER_CALL, RAW),
        ratio(results, "redis.c64.vsRawBatched", "redis.c64", OURS, RAW_BATCHED),
        ratio(results, "redis.serial.vsRaw", "redis.serial", OURS, RAW),
        ratio(results, "redis.serial.vsRlf", "redis.serial", OURS, RLF),
        ratio(results, "redis.multi3.c64.vsSequential", "redis.multi3.c64", MULTI, SEQUENTIAL),
        ratio(results, "redis.multi3.serial.vsSequential", "redis.multi3.serial", MULTI, SEQUENTIAL)
      ],
      skipped: []
    }
  } finally {
    await runtime.dispose()
    await experimental.dispose()
    for (const client of clients) client.disconnect()
    await server.close()
  }
}

/** Ours' p99 over the raw client's at 64 callers (each pools every round's latencies; lower is better). */
const p99Ratio = (results: ReadonlyArray<Result>): Comparison => {
  const ours = resultOf(results, "redis.c64", OURS)
  const raw = resultOf(results, "redis.c64", RAW)
  return {
    name: "redis.c64.p99VsRaw",
    value: ours.p99Us / raw.p99Us,
    unit: "x",
    detail: `redis.c64: p99 of ${OURS} / p99 of ${RAW} (${ours.p99Us.toFixed(0)} / ${
      raw.p99Us.toFixed(0)
    } µs, lower is better)`,
    target: { op: "<=", value: 1.2 },
    headline: true
  }
}

/** The redis section. */
export const redis: Section = { name: "redis", run }
