/**
 * The ThrottleKit golden vectors (CONTRACT.md §6), read from `../shared/contract/golden-vectors.json`
 * beside the repository root and decoded with Schema into typed suites. The file is never copied into
 * the repo; when it is missing the loader fails with a message naming the expected path.
 */
import type { ParseResult } from "effect"
import { Data, Effect, Either, Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { Strategy } from "../../src/Policy.js"
import { decodePolicies } from "../../src/policyFile/decode.js"

/** Where the golden vectors are expected: `<repo>/../shared/contract/golden-vectors.json`. */
export const goldenVectorsPath = path.resolve(import.meta.dirname, "../../../shared/contract/golden-vectors.json")

/** The five Decision fields every `expect` pins. */
export const GoldenDecision = Schema.Struct({
  allowed: Schema.Boolean,
  limit: Schema.Number,
  remaining: Schema.Number,
  resetAt: Schema.Number,
  retryAfterMs: Schema.Number
})

/**
 * A strategy as the vectors write it: `{ kind, options }` with the camelCase option names (numbers, and
 * strings such as a quota's `resetCadence`).
 */
export const GoldenStrategy = Schema.Struct({
  kind: Schema.String,
  options: Schema.Record({ key: Schema.String, value: Schema.Union(Schema.Number, Schema.String) })
})

/** A `rateLimit` suite: checks replayed in order on a fresh key. */
export const RateLimitSuite = Schema.Struct({
  primitive: Schema.Literal("rateLimit"),
  name: Schema.String,
  strategy: GoldenStrategy,
  key: Schema.String,
  ops: Schema.Array(Schema.Struct({ now: Schema.Number, cost: Schema.Number, expect: GoldenDecision }))
})

/** A `tokenBudget` suite: debits replayed in order on a fresh key. */
export const TokenBudgetSuite = Schema.Struct({
  primitive: Schema.Literal("tokenBudget"),
  name: Schema.String,
  options: Schema.Struct({ budget: Schema.Number, windowMs: Schema.Number }),
  ops: Schema.Array(Schema.Struct({ now: Schema.Number, tokens: Schema.Number, expect: GoldenDecision }))
})

/** A server grant handed to the lease spender. */
export const LeaseGrant = Schema.Struct({
  op: Schema.Literal("grant"),
  capacity: Schema.Number,
  expiresAt: Schema.Number
})

/** A local spend and what it must answer: a decision, or "refresh needed". */
export const LeaseSpend = Schema.Struct({
  op: Schema.Literal("spend"),
  now: Schema.Number,
  cost: Schema.Number,
  expect: Schema.Struct({ needsRefresh: Schema.Boolean, decision: Schema.optional(GoldenDecision) })
})

/** A `lease` suite: grant and spend events on a fresh spender. */
export const LeaseSuite = Schema.Struct({
  primitive: Schema.Literal("lease"),
  name: Schema.String,
  limit: Schema.Number,
  ttlMs: Schema.Number,
  windowCoupled: Schema.Boolean,
  events: Schema.Array(Schema.Union(LeaseGrant, LeaseSpend))
})

/** The whole file. */
export const GoldenVectors = Schema.Struct({
  contractVersion: Schema.String,
  generatedFrom: Schema.String,
  suites: Schema.Array(Schema.Union(RateLimitSuite, TokenBudgetSuite, LeaseSuite))
})

export type GoldenDecision = typeof GoldenDecision.Type
export type GoldenStrategy = typeof GoldenStrategy.Type
export type RateLimitSuite = typeof RateLimitSuite.Type
export type TokenBudgetSuite = typeof TokenBudgetSuite.Type
export type LeaseSuite = typeof LeaseSuite.Type
export type GoldenVectors = typeof GoldenVectors.Type

/** The golden vectors file is not where the tests expect it. */
export class GoldenVectorsMissing extends Data.TaggedError("GoldenVectorsMissing")<{ readonly path: string }> {
  override get message(): string {
    return `golden vectors not found at ${this.path} (tests read ../shared/contract/golden-vectors.json ` +
      "beside the repository root; the file is never copied into the repo)"
  }
}

/** Reads and decodes the golden vectors. */
export const loadGoldenVectorsEffect: Effect.Effect<GoldenVectors, GoldenVectorsMissing | ParseResult.ParseError> =
  Effect.suspend((): Effect.Effect<GoldenVectors, GoldenVectorsMissing | ParseResult.ParseError> =>
    existsSync(goldenVectorsPath)
      ? Schema.decodeUnknown(Schema.parseJson(GoldenVectors))(readFileSync(goldenVectorsPath, "utf8"))
      : Effect.fail(new GoldenVectorsMissing({ path: goldenVectorsPath }))
  )

let cached: GoldenVectors | undefined

/**
 * Reads and decodes the golden vectors synchronously (for building `it.each` tables at collection time).
 * Throws the `GoldenVectorsMissing` or decode error, which fails the test file with its message.
 */
export const loadGoldenVectors = (): GoldenVectors => {
  if (cached === undefined) cached = Effect.runSync(loadGoldenVectorsEffect)
  return cached
}

/** The suites of the vectors, split by primitive. */
export const goldenSuites = (vectors: GoldenVectors = loadGoldenVectors()): {
  readonly rateLimit: ReadonlyArray<RateLimitSuite>
  readonly tokenBudget: ReadonlyArray<TokenBudgetSuite>
  readonly lease: ReadonlyArray<LeaseSuite>
} => ({
  rateLimit: vectors.suites.filter((s): s is RateLimitSuite => s.primitive === "rateLimit"),
  tokenBudget: vectors.suites.filter((s): s is TokenBudgetSuite => s.primitive === "tokenBudget"),
  lease: vectors.suites.filter((s): s is LeaseSuite => s.primitive === "lease")
})

/**
 * Turns a golden `{ kind, options }` into our `Strategy`: the vectors use the same camelCase option
 * names as the policy model, so the options are spread beside `kind` and decoded (which fails loudly if
 * a future vector file renames or drops one). A quota's options are the core's (fields of other cadences
 * absent, defaults left out), so a quota is read as a policy file reads it: with the core's defaults.
 */
export const toStrategy = (golden: GoldenStrategy): Strategy => {
  if (golden.kind !== "quota") return Schema.decodeUnknownSync(Strategy)({ ...golden.options, kind: golden.kind })
  const set = decodePolicies({ limiters: { golden: { ...golden.options, strategy: "quota" } } }, undefined)
  if (Either.isLeft(set)) throw new Error(`golden quota options: ${set.left.path.join(".")}: ${set.left.reason}`)
  const policy = set.right.policies[0]
  if (policy?.kind !== "limiter") throw new Error("golden quota options: not a limiter")
  return policy.strategy
}
