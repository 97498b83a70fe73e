/**
 * Bad input, table-driven, through every door (memory; Redis; the gRPC service over a Redis store): each
 * row asserts the typed error (or the documented no-op) AND that no state changed. State is read back
 * three ways: the whole Redis keyspace (every key's type and serialized value) where there is a Redis,
 * a peek of the limiter key, and afterwards a fresh meter key and two free concurrency slots.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Context, Effect, Layer, Option, type Scope } from "effect"
import { Redis } from "ioredis"
import type { RateLimiterError } from "../../src/Errors.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import type { MeterPolicy, Policy } from "../../src/Policy.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { MAX_KEY_BYTES } from "../../src/Validate.js"
import { serviceOver } from "../service/support.js"
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
  windowMs: HOUR,
  shared: false
}
const policies: ReadonlyArray<Policy> = [fixedWindow("window", 10, HOUR), meter, pool("slots", 2)]

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
).pipe(Layer.provide(MemoryBackend.layer({ policies })))

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

/** What a row expects: a typed error, or a value the check accepts (the documented no-ops). */
type Expectation =
  | { readonly error: RateLimiterError["_tag"]; readonly argument?: string }
  | { readonly value: (value: unknown) => void }

interface Row {
  readonly name: string
  readonly call: (limiter: RateLimiterService, key: string) => Effect.Effect<unknown, RateLimiterError, Scope.Scope>
  readonly expect: Expectation
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
    { name: `debit: ${label} tokens`, call: (l, k) => l.debit("tokens", k, amount), expect: invalid("tokens") },
    { name: `admit: ${label} cost`, call: (l, k) => l.admit("slots", k, { cost: amount }), expect: invalid("cost") }
  ]),
  ...badKeys.flatMap(([label, key]): Array<Row> => [
    { name: `check: ${label} key`, call: (l) => l.check("window", key), expect: invalid("key") },
    { name: `peek: ${label} key`, call: (l) => l.peek("window", key), expect: invalid("key") },
    { name: `forecast: ${label} key`, call: (l) => l.forecast("window", key), expect: invalid("key") },
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
  { name: "peek on a meter", call: (l, k) => l.peek("tokens", k), expect: unsupported },
  { name: "forecast on a meter", call: (l, k) => l.forecast("tokens", k), expect: unsupported },
  { name: "admit on a meter", call: (l, k) => l.admit("tokens", k), expect: unsupported },
  { name: "check on an admitter", call: (l, k) => l.check("slots", k), expect: unsupported },
  { name: "checkMany on an admitter", call: (l, k) => l.checkMany("slots", [k]), expect: unsupported },
  { name: "debit on an admitter", call: (l, k) => l.debit("slots", k), expect: unsupported },
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

const runRow = (row: Row, door: string) =>
  Effect.gen(function*() {
    const subject = yield* DoorUnderTest
    const key = `${door}:${row.name}`
    // Some state to protect: the key and a sentinel partly spent.
    yield* subject.limiter.check("window", key, 3)
    const before = yield* observe(subject, key)

    const exit = yield* Effect.exit(Effect.scoped(row.call(subject.limiter, key)))
    if ("error" in row.expect) {
      expect(exit._tag).toBe("Failure")
      if (exit._tag === "Failure") {
        const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
        expect(failure?._tag, `cause: ${exit.cause.toString().slice(0, 300)}`).toBe(row.expect.error)
        if (failure?._tag === "InvalidArgument" && row.expect.argument !== undefined) {
          expect(failure.argument).toBe(row.expect.argument)
          expect(failure.reason.length).toBeGreaterThan(0)
        }
      }
    } else {
      expect(exit._tag, exit._tag === "Failure" ? exit.cause.toString() : "").toBe("Success")
      if (exit._tag === "Success") row.expect.value(exit.value)
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

  layer(redisDoor((url) => serviceOver(redisStore(url))), { excludeTestServices: true, timeout: 60_000 })(
    "service (gRPC over a Redis store)",
    (it) => {
      it.effect.each(rows)("$name", (row) => runRow(row, "service"))
    }
  )
})
