/**
 * The golden vectors (CONTRACT.md §6) replayed through the vendored Lua in a real Redis, with explicit
 * `now`, every Decision field compared. `rateLimit` suites run the contract's check scripts;
 * `tokenBudget` suites run our debit script.
 *
 * On the Lua wire `now = 0` selects the Redis server clock, so a vector's `now = 0` is sent as
 * `Number.MIN_VALUE` (5e-324): every expression of the scripts treats it exactly as 0 (`x ± 5e-324 = x` for
 * every `x ≥ 1`, and `floor(5e-324 / w) = 0`), while the script still takes it as an explicit instant.
 * Every other `now` is sent as written. The simulated clock runs far from Redis's, so a TTL must not
 * remove a key in real time mid-suite: each check runs through `persisting` (the vendored text, then
 * PERSIST in the same script run). Expired state is equivalent to no state in every strategy, so no
 * decision depends on when Redis would have dropped it.
 *
 * The vectors run twice: on one node and on a Redis Cluster (three primaries; each suite's key lives on
 * the primary of its slot, the scripts loaded on every primary), where the same replies are expected.
 */
import { describe, expect, layer, type Vitest } from "@effect/vitest"
import { Effect } from "effect"
import { decisionOf } from "../../src/redis/Replies.js"
import type { ScriptCall } from "../../src/redis/ScriptRunner.js"
import { scriptsOf } from "../../src/redis/StrategyScripts.js"
import { goldenSuites, toStrategy } from "../support/golden.js"
import {
  call,
  onCluster,
  persisted,
  persisting,
  type RedisEnv,
  TestRedis,
  testRedisLayer,
  transaction
} from "./harness.js"

const explicitNow = (now: number): number => now === 0 ? Number.MIN_VALUE : now

/** Runs `calls` in one MULTI/EXEC, each through `persisting`, and decodes each reply's decision. */
const decisionsOf = (env: RedisEnv, calls: ReadonlyArray<ScriptCall>) =>
  Effect.flatMap(
    transaction(env, calls.map((c) => persisting(c))),
    (replies) => Effect.forEach(replies, (r) => decisionOf(persisted(r).reply))
  )

const suites = goldenSuites()

/** The replays, on the Redis of `it`'s context. */
const goldenTests = (it: Vitest.MethodsNonLive<TestRedis, true>): void => {
  it("has suites to replay", () => {
    expect(suites.rateLimit.length).toBeGreaterThanOrEqual(9)
    expect(suites.tokenBudget.length).toBeGreaterThanOrEqual(3)
  })

  for (const suite of suites.rateLimit) {
    it.effect(`rateLimit ${suite.name}`, () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        // The scripts and ARGV a Redis door runs for the strategy (a quota's are not named after its kind).
        const { params, strategy } = scriptsOf(toStrategy(suite.strategy))
        const key = `${env.ns}:golden:${suite.name}:${suite.key}`
        const calls = yield* Effect.forEach(suite.ops, (op) =>
          call(env, `${strategy}.check`, { key }, { ...params, now: explicitNow(op.now), cost: op.cost }))
        const got = yield* decisionsOf(env, calls)
        expect(got).toEqual(suite.ops.map((op) =>
          op.expect
        ))
      }))
  }

  for (const suite of suites.tokenBudget) {
    it.effect(`tokenBudget ${suite.name}`, () =>
      Effect.gen(function*() {
        const env = yield* TestRedis
        const key = `${env.ns}:golden:${suite.name}`
        const calls = yield* Effect.forEach(suite.ops, (op) =>
          call(env, "tokenBudget.debit", { key }, { ...suite.options, now: explicitNow(op.now), tokens: op.tokens }))
        const got = yield* decisionsOf(env, calls)
        expect(got).toEqual(suite.ops.map((op) =>
          op.expect
        ))
      }))
  }
}

describe("golden vectors through the Lua", () => {
  layer(testRedisLayer(), { excludeTestServices: true })(goldenTests)
})

onCluster("golden vectors through the Lua on a Redis Cluster", goldenTests, 2)
