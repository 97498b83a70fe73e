/**
 * Bad input, table-driven, through every door — Memory; Redis; the gRPC Service door (over a Redis
 * store); the two-tier and fail-mode wrappers (over the Memory store) — with one expectation per row for
 * all of them, so every door must raise the same error tag with the same `argument`. Rows with several
 * faults at once pin the one order of the front: the policy (unknown, then the wrong kind), then the key,
 * then the amount. Each row also asserts that no state changed. State is read back three ways: the whole
 * Redis keyspace (every key's type and serialized value) where there is a Redis, a peek of the limiter
 * key, and afterwards a fresh meter key and two free concurrency slots.
 *
 * The Service door knows no policies; it asks the server (a probe that consumes nothing) when an argument
 * is bad. A debit or admit with a bad argument on a policy of the other non-limiter kind is the one case
 * the server cannot be asked without consuming: there the Service door reports the argument (`service`
 * in the row says so).
 */
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Context, Effect, Layer, Option, type Scope } from "effect"
import { Redis } from "ioredis"
import type { Coordinator } from "../../src/coordinator/Coordinator.js"
import * as MemoryCoordinator from "../../src/coordinator/MemoryCoordinator.js"
import type { RateLimiterError } from "../../src/Errors.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { LimiterPolicy, MeterPolicy, Policy } from "../../src/Policy.js"
import * as FailMode from "../../src/server/FailMode.js"
import * as TwoTier from "../../src/server/TwoTier.js"
import * as Front from "../../src/services/RateLimiter.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import type { Store } from "../../src/services/RateLimiterStore.js"
import { MAX_KEY_BYTES } from "../../src/Validate.js"
import { serviceOver } from "../service/support.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { redisServer } from "../support/redisServer.js"
import { fixedWindow, pool } from "./support.js"

const HOUR = 3_600_000
const BUDGET = 100

const meter: MeterPolicy = {
  kind: "meter",
  name: "tokens",
  prefix: "tokens",
  maxKeys: 100_000,
  budget: BUDGET,
  windowMs: LONG_WINDOW_MS,
  shared: false
}
/** A leased two-tier limiter: the two-tier wrapper answers its checks from local credits. */
const leased: LimiterPolicy = {
  ...fixedWindow("leased", 10, LONG_WINDOW_MS),
  twoTier: { mode: "leased", batch: 5, lowWater: 0, windowCoupled: true }
}
/** A slow GCRA limiter (one per 10 minutes), whose cost cap is low enough to reach. */
const slow: LimiterPolicy = {
  kind: "limiter",
  name: "slow",
  prefix: "slow",
  maxKeys: 100_000,
  strategy: { kind: "gcra", limit: 1, periodMs: 600_000, burst: 1 }
}
const policies: ReadonlyArray<Policy> = [
  fixedWindow("window", 10, LONG_WINDOW_MS),
  meter,
  pool("slots", 2),
  leased,
  slow
]

/** A door under test: its limiter, and the Redis keyspace behind it when there is one. */
interface Door {
  readonly limiter: RateLimiterService
  /** Every key with its type and serialized value, sorted; `undefined` for the memory door. */
  readonly keyspace: Effect.Effect<string | undefined>
}

class DoorUnderTest extends Context.Tag("test/DoorUnderTest")<DoorUnderTest, Door>() {}

/** Reads the whole keyspace (values through DUMP, so any change of any key shows). */
const keyspaceOf = (client: Redis): Effect.Effect<string> =>
  Effect.promise(async () => {
    const keys = (await client.keys("*")).sort()
    const entries = await Promise.all(keys.map(async (key) => {
      const [type, dump] = await Promise.all([client.type(key), client.dumpBuffer(key)])
      return `${key} ${type} ${dump?.toString("hex") ?? "(gone)"}`
    }))
    return entries.join("\n")
  })

const memoryDoor = Layer.effect(
  DoorUnderTest,
  Effect.map(RateLimiter, (limiter): Door => ({ limiter, keyspace: Effect.succeed(undefined) }))
).pipe(Layer.provide(MemoryBackend.layer({ policies })), Layer.orDie)

/** A private Redis, the door built by `over` on it, and an admin client to read the keyspace. */
const redisDoor = (over: (url: string) => Layer.Layer<RateLimiter, unknown>) =>
  Layer.scoped(
    DoorUnderTest,
    Effect.gen(function*() {
      const redis = yield* redisServer
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(redis.url)),
        (client) => Effect.sync(() => client.disconnect())
      )
      const limiter = Context.get(yield* Layer.build(over(redis.url)), RateLimiter)
      return { limiter, keyspace: keyspaceOf(admin) }
    }).pipe(Effect.orDie)
  )

const redisStore = (url: string) => RedisBackend.layer({ policies, redis: url })

/** The front over a wrapped Memory store. */
const wrappedMemoryDoor = (wrapper: Layer.Layer<Store, never, Store | Coordinator>) =>
  Layer.effect(
    DoorUnderTest,
    Effect.map(RateLimiter, (limiter): Door => ({ limiter, keyspace: Effect.succeed(undefined) }))
  ).pipe(
    Layer.provide(Front.layer()),
    Layer.provide(wrapper),
    Layer.provide(MemoryBackend.layerStore({ policies })),
    Layer.provide(MemoryCoordinator.layer()),
    Layer.orDie
  )

const twoTierDoor = wrappedMemoryDoor(TwoTier.layer)
const failModeDoor = wrappedMemoryDoor(FailMode.layer({ mode: "closed" }))

/** What a row expects: a typed error, or a value the check accepts (the documented no-ops). */
type Expectation =
  | { readonly error: RateLimiterError["_tag"]; readonly argument?: string }
  | { readonly value: (value: unknown) => void }

/** The doors of this table. */
type DoorName = "memory" | "redis" | "service" | "twoTier" | "failMode"

interface Row {
  readonly name: string
  readonly call: (limiter: RateLimiterService, key: string) => Effect.Effect<unknown, RateLimiterError, Scope.Scope>
  readonly expect: Expectation
  /** What the Service door answers instead, where it cannot ask the server (see the module doc). */
  readonly service?: Expectation
}

const invalid = (argument: string): Expectation => ({ error: "InvalidArgument", argument })
const notFound: Expectation = { error: "PolicyNotFound" }
const unsupported: Expectation = { error: "OperationNotSupported" }

const badAmounts: ReadonlyArray<readonly [string, number]> = [
  ["negative", -1],
  ["zero", 0],
  ["NaN", Number.NaN],
  ["+infinite", Number.POSITIVE_INFINITY],
  ["-infinite", Number.NEGATIVE_INFINITY],
  ["fractional", 1.5],
  ["2^53", 2 ** 53],
  ["2^64", 2 ** 64]
]

const MIB = "k".repeat(1 << 20)
const badKeys: ReadonlyArray<readonly [string, string]> = [
  ["empty", ""],
  ["1 MiB", MIB],
  ["one byte too long", "k".repeat(MAX_KEY_BYTES + 1)],
  ["multi-byte, too long in UTF-8", "é".repeat(MAX_KEY_BYTES / 2 + 1)],
  ["a lone surrogate (not encodable as UTF-8)", "key-\uD800"],
  ["a reversed surrogate pair", "\uDC00\uD800"]
]

const UNKNOWN_LEASE = "0123456789abcdef0123456789abcdef"

const rows: ReadonlyArray<Row> = [
  ...badAmounts.flatMap(([label, amount]): Array<Row> => [
    { name: `check: ${label} cost`, call: (l, k) => l.check("window", k, amount), expect: invalid("cost") },
    { name: `checkMany: ${label} cost`, call: (l, k) => l.checkMany("window", [k], amount), expect: invalid("cost") },
    { name: `forecast: ${label} cost`, call: (l, k) => l.forecast("window", k, amount), expect: invalid("cost") },
    {
      name: `forecast on a meter: ${label} cost`,
      call: (l, k) => l.forecast("tokens", k, amount),
      expect: invalid("cost")
    },
    { name: `debit: ${label} tokens`, call: (l, k) => l.debit("tokens", k, amount), expect: invalid("tokens") },
    { name: `admit: ${label} cost`, call: (l, k) => l.admit("slots", k, { cost: amount }), expect: invalid("cost") }
  ]),
  ...badKeys.flatMap(([label, key]): Array<Row> => [
    { name: `check: ${label} key`, call: (l) => l.check("window", key), expect: invalid("key") },
    { name: `peek: ${label} key`, call: (l) => l.peek("window", key), expect: invalid("key") },
    { name: `forecast: ${label} key`, call: (l) => l.forecast("window", key), expect: invalid("key") },
    { name: `peek on a meter: ${label} key`, call: (l) => l.peek("tokens", key), expect: invalid("key") },
    { name: `forecast on a meter: ${label} key`, call: (l) => l.forecast("tokens", key), expect: invalid("key") },
    { name: `debit: ${label} key`, call: (l) => l.debit("tokens", key), expect: invalid("key") },
    { name: `admit: ${label} key`, call: (l) => l.admit("slots", key), expect: invalid("key") },
    // A bad key anywhere in a batch refuses the whole batch: the good key before it is not charged.
    {
      name: `checkMany: ${label} key second`,
      call: (l, k) => l.checkMany("window", [k, key]),
      expect: invalid("keys[1]")
    }
  ]),
  {
    name: "checkMany: more keys than a batch may carry",
    call: (l, k) => l.checkMany("window", Array.from({ length: 10_001 }, (_, i) => `${k}-${i}`)),
    expect: invalid("keys")
  },
  { name: "check: unknown policy", call: (l, k) => l.check("nope", k), expect: notFound },
  { name: "checkMany: unknown policy", call: (l, k) => l.checkMany("nope", [k]), expect: notFound },
  { name: "peek: unknown policy", call: (l, k) => l.peek("nope", k), expect: notFound },
  { name: "forecast: unknown policy", call: (l, k) => l.forecast("nope", k), expect: notFound },
  { name: "debit: unknown policy", call: (l, k) => l.debit("nope", k), expect: notFound },
  { name: "admit: unknown policy", call: (l, k) => l.admit("nope", k), expect: notFound },
  { name: "check: empty policy name", call: (l, k) => l.check("", k), expect: notFound },
  { name: "debit on a rate limiter", call: (l, k) => l.debit("window", k), expect: unsupported },
  { name: "admit on a rate limiter", call: (l, k) => l.admit("window", k), expect: unsupported },
  { name: "check on a meter", call: (l, k) => l.check("tokens", k), expect: unsupported },
  { name: "peek on an admitter", call: (l, k) => l.peek("slots", k), expect: unsupported },
  { name: "forecast on an admitter", call: (l, k) => l.forecast("slots", k), expect: unsupported },
  { name: "admit on a meter", call: (l, k) => l.admit("tokens", k), expect: unsupported },
  { name: "check on an admitter", call: (l, k) => l.check("slots", k), expect: unsupported },
  { name: "checkMany on an admitter", call: (l, k) => l.checkMany("slots", [k]), expect: unsupported },
  { name: "debit on an admitter", call: (l, k) => l.debit("slots", k), expect: unsupported },
  // Several faults at once: the policy first (unknown, then the wrong kind), then the key, then the amount.
  { name: "check: unknown policy, empty key, zero cost", call: (l) => l.check("nope", "", 0), expect: notFound },
  // A name longer than any policy can have is the policy's fault, and comes before the key's and cost's.
  { name: "check: 257-byte policy name", call: (l, k) => l.check("p".repeat(257), k), expect: invalid("policy") },
  {
    name: "check: 257-byte policy name, empty key, zero cost",
    call: (l) => l.check("p".repeat(257), "", 0),
    expect: invalid("policy")
  },
  {
    name: "debit: 1 KiB policy name, 1 MiB key",
    call: (l) => l.debit("é".repeat(512), MIB),
    expect: invalid("policy")
  },
  {
    name: "admit: 257-byte policy name, bad cost",
    call: (l, k) => l.admit("p".repeat(257), k, { cost: -1 }),
    expect: invalid("policy")
  },
  { name: "check: meter policy, empty key, zero cost", call: (l) => l.check("tokens", "", 0), expect: unsupported },
  { name: "check: empty key and zero cost", call: (l) => l.check("window", "", 0), expect: invalid("key") },
  { name: "check: empty key and NaN cost", call: (l) => l.check("window", "", Number.NaN), expect: invalid("key") },
  {
    name: "checkMany: unknown policy and a bad key",
    call: (l, k) => l.checkMany("nope", [k, ""], 0),
    expect: notFound
  },
  {
    name: "checkMany: an admitter with bad keys",
    call: (l) => l.checkMany("slots", [""], -1),
    expect: unsupported
  },
  {
    name: "checkMany: a bad key and a bad cost",
    call: (l) => l.checkMany("window", [""], 0),
    expect: invalid("keys[0]")
  },
  { name: "peek: unknown policy, empty key", call: (l) => l.peek("nope", ""), expect: notFound },
  { name: "peek: meter policy, empty key", call: (l) => l.peek("tokens", ""), expect: invalid("key") },
  {
    name: "forecast: meter policy, empty key and zero cost",
    call: (l) => l.forecast("tokens", "", 0),
    expect: invalid("key")
  },
  { name: "peek: admitter policy, lone surrogate key", call: (l) => l.peek("slots", "\uD800"), expect: unsupported },
  { name: "forecast: unknown policy, bad key and cost", call: (l) => l.forecast("nope", "", 0), expect: notFound },
  { name: "forecast: admitter policy, bad cost", call: (l, k) => l.forecast("slots", k, 0), expect: unsupported },
  { name: "forecast: empty key and zero cost", call: (l) => l.forecast("window", "", 0), expect: invalid("key") },
  { name: "debit: unknown policy, bad key and tokens", call: (l) => l.debit("nope", "", -1), expect: notFound },
  { name: "debit: a limiter, bad tokens", call: (l, k) => l.debit("window", k, 0), expect: unsupported },
  {
    name: "debit: an admitter, bad tokens",
    call: (l, k) => l.debit("slots", k, 0),
    expect: unsupported,
    service: invalid("tokens")
  },
  { name: "debit: empty key and zero tokens", call: (l) => l.debit("tokens", "", 0), expect: invalid("key") },
  { name: "admit: unknown policy, bad key and cost", call: (l) => l.admit("nope", "", { cost: 0 }), expect: notFound },
  { name: "admit: a limiter, bad cost", call: (l, k) => l.admit("window", k, { cost: 0 }), expect: unsupported },
  // The Service door's probe tells a meter by its Peek (our server answers one), so this is no blind spot.
  { name: "admit: a meter, empty key", call: (l) => l.admit("tokens", ""), expect: unsupported },
  { name: "admit: empty key and zero cost", call: (l) => l.admit("slots", "", { cost: 0 }), expect: invalid("key") },
  { name: "admit: negative hold", call: (l, k) => l.admit("slots", k, { hold: -1 }), expect: invalid("hold") },
  { name: "admit: NaN value", call: (l, k) => l.admit("slots", k, { value: Number.NaN }), expect: invalid("value") },
  { name: "admit: infinite hold", call: (l, k) => l.admit("slots", k, { hold: Infinity }), expect: invalid("hold") },
  {
    name: "admit: bad cost before a bad hold",
    call: (l, k) => l.admit("slots", k, { cost: 1.5, hold: -1 }),
    expect: invalid("cost")
  },
  {
    name: "check: leased two-tier policy, zero cost",
    call: (l, k) => l.check("leased", k, 0),
    expect: invalid("cost")
  },
  { name: "check: leased two-tier policy, empty key", call: (l) => l.check("leased", ""), expect: invalid("key") },
  {
    name: "checkMany: leased two-tier policy, a bad key",
    call: (l, k) => l.checkMany("leased", [k, "\uDC00"]),
    expect: invalid("keys[1]")
  },
  { name: "debit on a leased two-tier limiter", call: (l, k) => l.debit("leased", k), expect: unsupported },
  {
    // Above the capacity (1): CapacityExceeded on a front that raises it. Our server's front answers such
    // a cost with the contract's denial, capped where no Decision could state its wait: InvalidArgument.
    name: "check: a cost above the capacity, whose wait no Decision could state (gcra, 1 per 10 minutes)",
    call: (l, k) => l.check("slow", k, 2 ** 40),
    expect: { error: "CapacityExceeded" },
    service: invalid("cost")
  },
  {
    name: "release of an unknown lease id is a no-op",
    call: (l) => l.leases.release(UNKNOWN_LEASE, true),
    expect: { value: (value) => expect(value).toBeUndefined() }
  },
  {
    name: "release of a malformed lease id is a no-op",
    call: (l) => l.leases.release("not a lease id \uD800", false),
    expect: { value: (value) => expect(value).toBeUndefined() }
  },
  {
    name: "release of the empty lease id is a no-op",
    call: (l) => l.leases.release("", false),
    expect: { value: (value) => expect(value).toBeUndefined() }
  },
  {
    name: "heartbeat of unknown ids reports them reclaimed",
    call: (l) => l.leases.heartbeat([UNKNOWN_LEASE, "", "garbage"]),
    expect: {
      value: (value) => expect(value).toMatchObject({ live: [], reclaimed: [UNKNOWN_LEASE, "", "garbage"] })
    }
  }
]

/** The state a row must leave alone. */
const observe = (door: Door, key: string) =>
  Effect.all({
    keyspace: door.keyspace,
    window: Effect.map(door.limiter.peek("window", key), (d) => [d.allowed, d.limit, d.remaining]),
    sentinel: Effect.map(door.limiter.peek("window", "sentinel"), (d) => [d.allowed, d.limit, d.remaining])
  })

const runRow = (row: Row, door: DoorName) =>
  Effect.gen(function*() {
    const expectation = door === "service" && row.service !== undefined ? row.service : row.expect
    const subject = yield* DoorUnderTest
    const key = `${door}:${row.name}`
    // Some state to protect: the key and a sentinel partly spent.
    yield* subject.limiter.check("window", key, 3)
    const before = yield* observe(subject, key)

    const exit = yield* Effect.exit(Effect.scoped(row.call(subject.limiter, key)))
    if ("error" in expectation) {
      expect(exit._tag).toBe("Failure")
      if (exit._tag === "Failure") {
        const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
        expect(failure?._tag, `cause: ${exit.cause.toString().slice(0, 300)}`).toBe(expectation.error)
        if (expectation.argument !== undefined) {
          expect(failure?._tag === "InvalidArgument" ? failure.argument : undefined).toBe(expectation.argument)
        }
        if (failure?._tag === "InvalidArgument") expect(failure.reason.length).toBeGreaterThan(0)
      }
    } else {
      expect(exit._tag, exit._tag === "Failure" ? exit.cause.toString() : "").toBe("Success")
      if (exit._tag === "Success") expectation.value(exit.value)
    }

    const after = yield* observe(subject, key)
    expect(after).toEqual(before)
    // Nothing was charged to the meter, and no slot was left held.
    expect((yield* subject.limiter.debit("tokens", key, 1)).remaining).toBe(BUDGET - 1)
    const slots = yield* Effect.scoped(
      Effect.map(Effect.forEach([1, 2], () => subject.limiter.admit("slots", key)), (a) => a.filter((x) => x.held))
    )
    expect(slots).toHaveLength(2)
  })

describe("bad input changes nothing, through every door", () => {
  layer(memoryDoor, { excludeTestServices: true })("memory", (it) => {
    it.effect.each(rows)("$name", (row) => runRow(row, "memory"))
  })

  layer(redisDoor(redisStore), { excludeTestServices: true, timeout: 60_000 })("redis", (it) => {
    it.effect.each(rows)("$name", (row) => runRow(row, "redis"))
  })

  layer(redisDoor((url) => serviceOver({ policies, store: { kind: "redis", redis: url } })), {
    excludeTestServices: true,
    timeout: 60_000
  })(
    "service (gRPC over a Redis store)",
    (it) => {
      it.effect.each(rows)("$name", (row) => runRow(row, "service"))
    }
  )

  layer(twoTierDoor, { excludeTestServices: true })("two-tier wrapper (over the Memory store)", (it) => {
    it.effect.each(rows)("$name", (row) => runRow(row, "twoTier"))
  })

  layer(failModeDoor, { excludeTestServices: true })("fail-mode wrapper (over the Memory store)", (it) => {
    it.effect.each(rows)("$name", (row) => runRow(row, "failMode"))
  })
})

// ---------------------------------------------------------------------------------------------------------
// Bad policies: every door refuses to build, with the same PolicyError (path and reason)
// ---------------------------------------------------------------------------------------------------------

const gcra = (fields: Record<string, unknown>): Policy =>
  ({
    ...fixedWindow("bad", 10, HOUR),
    strategy: { kind: "gcra", limit: 10, periodMs: 1000, burst: 10, ...fields }
  }) as unknown as Policy

const withStrategy = (strategy: Record<string, unknown>): Policy =>
  ({ ...fixedWindow("bad", 10, HOUR), strategy }) as unknown as Policy

const withConcurrency = (fields: Record<string, unknown>): Policy => {
  const base = pool("bad", 2)
  return { ...base, concurrency: { ...base.concurrency, ...fields } } as unknown as Policy
}

interface BadPolicyRow {
  readonly name: string
  readonly policies: ReadonlyArray<Policy>
  /** The path the PolicyError names. */
  readonly path: string
}

const badPolicyRows: ReadonlyArray<BadPolicyRow> = [
  { name: "a duplicate name", policies: [fixedWindow("a", 1, 1000), fixedWindow("a", 2, 1000)], path: "limiters.a" },
  { name: "an empty name", policies: [fixedWindow("", 1, 1000)], path: "limiters[\"\"]" },
  { name: "gcra limit 0", policies: [gcra({ limit: 0 })], path: "limiters.bad.strategy.limit" },
  { name: "gcra periodMs -5", policies: [gcra({ periodMs: -5 })], path: "limiters.bad.strategy.periodMs" },
  { name: "gcra burst NaN", policies: [gcra({ burst: Number.NaN })], path: "limiters.bad.strategy.burst" },
  { name: "gcra limit 1.5", policies: [gcra({ limit: 1.5 })], path: "limiters.bad.strategy.limit" },
  {
    name: "a token bucket refilling at 0 per second",
    policies: [withStrategy({ kind: "tokenBucket", capacity: 5, refillPerSec: 0 })],
    path: "limiters.bad.strategy.refillPerSec"
  },
  {
    name: "a fixed window of 0 ms",
    policies: [withStrategy({ kind: "fixedWindow", limit: 5, windowMs: 0 })],
    path: "limiters.bad.strategy.windowMs"
  },
  {
    name: "a sliding window with 0 buckets",
    policies: [withStrategy({ kind: "slidingWindow", limit: 5, windowMs: 1000, buckets: 0 })],
    path: "limiters.bad.strategy.buckets"
  },
  {
    name: "a sliding window cut finer than 1 ms",
    policies: [withStrategy({ kind: "slidingWindow", limit: 5, windowMs: 10, buckets: 20 })],
    path: "limiters.bad.strategy"
  },
  {
    name: "a window longer than 100 years",
    policies: [withStrategy({ kind: "fixedWindow", limit: 5, windowMs: 2 ** 52 })],
    path: "limiters.bad.strategy"
  },
  {
    name: "a gcra burst that takes longer than 100 years to refill",
    policies: [gcra({ limit: 1, periodMs: 86_400_000, burst: 100_000 })],
    path: "limiters.bad.strategy"
  },
  {
    name: "an unknown strategy",
    policies: [withStrategy({ kind: "leakyBucket", limit: 5 })],
    path: "limiters.bad.strategy.kind"
  },
  { name: "a meter budget of 0", policies: [{ ...meter, budget: 0 }], path: "limiters.tokens.budget" },
  {
    name: "an admitter whose minLimit exceeds its maxLimit",
    policies: [withConcurrency({ algorithm: "aimd", minLimit: 5, maxLimit: 2, initialLimit: 2 })],
    path: "limiters.bad.concurrency.maxLimit"
  },
  {
    name: "a leased two-tier policy whose lowWater reaches its batch",
    policies: [{ ...leased, twoTier: { mode: "leased", batch: 5, lowWater: 5, windowCoupled: true } }],
    path: "limiters.leased.twoTier.lowWater"
  },
  {
    name: "an unknown policy kind",
    policies: [{ ...meter, kind: "quota" } as unknown as Policy],
    path: "limiters.tokens.kind"
  }
]

/** Builds a door over `bad` and returns how it failed. */
const buildFailure = <A, E>(build: Layer.Layer<A, E>): Effect.Effect<E | undefined> =>
  Effect.map(
    Effect.exit(Effect.scoped(Layer.build(build))),
    (exit) => exit._tag === "Success" ? undefined : Option.getOrUndefined(Cause.failureOption(exit.cause))
  )

describe("bad policies fail every door's construction with the same PolicyError", () => {
  layer(Layer.empty, { excludeTestServices: true, timeout: 60_000 })("doors", (it) => {
    it.scoped.each(badPolicyRows)("$name", (row) =>
      Effect.gen(function*() {
        const redis = yield* redisServer
        const over = (wrapper: Layer.Layer<Store, never, Store | Coordinator>) =>
          Front.layer().pipe(
            Layer.provide(wrapper),
            Layer.provide(MemoryBackend.layerStore({ policies: row.policies })),
            Layer.provide(MemoryCoordinator.layer())
          )
        const failures = yield* Effect.all([
          Effect.map(buildFailure(MemoryBackend.layer({ policies: row.policies })), (f) => ["memory", f] as const),
          Effect.map(
            buildFailure(RedisBackend.layer({ policies: row.policies, redis: redis.url })),
            (f) => ["redis", f] as const
          ),
          Effect.map(
            buildFailure(serviceOver({ policies: row.policies })),
            (f) => ["service (its server's store)", f] as const
          ),
          Effect.map(buildFailure(over(TwoTier.layer)), (f) => ["two-tier", f] as const),
          Effect.map(buildFailure(over(FailMode.layer({ mode: "open" }))), (f) => ["fail-mode", f] as const)
        ])
        for (const [door, failure] of failures) {
          expect(failure, door).toMatchObject({ _tag: "PolicyError", path: row.path })
        }
        // One wording for all: the same reason on every door.
        const reasons = new Set(failures.map(([, failure]) => (failure as { readonly reason?: string }).reason))
        expect(reasons.size).toBe(1)
      }))
  })
})
