/**
 * Concurrency admission in Redis. A differential test runs random acquire / release / renew sequences
 * (fixed, aimd and gradient2 ceilings, with and without a rate axis of any strategy, quotas included,
 * leases expiring) through the admission scripts and through the engine's own admission
 * (`engine/admission.ts`, the code the Memory store runs, not a copy of it): every reply and the final
 * ceiling state must agree (the estimate bit for bit).
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Admitter } from "../../src/engine/admission.js"
import * as Engine from "../../src/engine/index.js"
import type { Concurrency, Strategy } from "../../src/Policy.js"
import { storeKey } from "../../src/Policy.js"
import type { Reply } from "../../src/redis/ScriptRunner.js"
import { scriptsOf } from "../../src/redis/StrategyScripts.js"
import { prng, type Rng } from "../support/prng.js"
import {
  call,
  persisted,
  persisting,
  type RedisEnv,
  type Step,
  TestRedis,
  testRedisLayer,
  transaction
} from "./harness.js"

const SEQUENCES = Number(process.env["REDIS_CONC_SEQUENCES"] ?? 50)
const OPS_PER_SEQUENCE = 200
const SEED = Number(process.env["REDIS_DIFF_SEED"] ?? 20_261_129)

const randomConcurrency = (rng: Rng): Concurrency => {
  const minLimit = rng.int(1, 4)
  const maxLimit = rng.int(minLimit, 16)
  return {
    algorithm: rng.pick(["fixed", "aimd", "gradient2"] as const),
    minLimit,
    maxLimit,
    initialLimit: rng.int(minLimit, maxLimit),
    backoffRatio: rng.pick([0.5, 0.75, 0.9, 0.99]),
    smoothing: rng.pick([0.1, 0.2, 0.5, 1]),
    tolerance: rng.pick([1, 1.5, 2, 3]),
    rttWindow: rng.int(1, 12)
  }
}

const randomRate = (rng: Rng): Strategy | undefined => {
  if (rng.next() < 0.5) return undefined
  switch (rng.pick(["gcra", "tokenBucket", "fixedWindow", "slidingWindow", "slidingWindowLog", "quota"] as const)) {
    case "gcra":
      return { kind: "gcra", limit: rng.int(1, 20), periodMs: rng.int(10, 5000), burst: rng.int(1, 20) }
    case "tokenBucket":
      return { kind: "tokenBucket", capacity: rng.int(1, 20), refillPerSec: rng.pick([0.5, 3, 10, 250]) }
    case "fixedWindow":
      return { kind: "fixedWindow", limit: rng.int(1, 20), windowMs: rng.int(10, 5000) }
    case "slidingWindow":
      return { kind: "slidingWindow", limit: rng.int(1, 20), windowMs: rng.int(10, 5000), buckets: rng.int(1, 8) }
    case "slidingWindowLog":
      return { kind: "slidingWindowLog", limit: rng.int(1, 20), windowMs: rng.int(10, 5000) }
    case "quota": {
      const limit = rng.int(1, 20)
      const offsetMinutes = rng.int(-840, 840)
      switch (rng.pick(["calendar-month", "calendar-week", "calendar-day", "fixed", "rolling"] as const)) {
        case "calendar-month":
          return { kind: "quota", resetCadence: "calendar-month", limit, offsetMinutes }
        case "calendar-week":
          return { kind: "quota", resetCadence: "calendar-week", limit, offsetMinutes, weekStartsOn: rng.int(0, 6) }
        case "calendar-day":
          return { kind: "quota", resetCadence: "calendar-day", limit, offsetMinutes }
        case "fixed":
          return {
            kind: "quota",
            resetCadence: "fixed",
            limit,
            periodMs: rng.int(10, 5000),
            anchor: rng.int(-5000, 5000)
          }
        case "rolling":
          return { kind: "quota", resetCadence: "rolling", limit, periodMs: rng.int(10, 5000), buckets: rng.int(1, 8) }
      }
    }
  }
}

const concurrencyArgv = (c: Concurrency) => ({
  algorithm: c.algorithm,
  minLimit: c.minLimit,
  maxLimit: c.maxLimit,
  initialLimit: c.initialLimit,
  backoffRatio: c.backoffRatio,
  smoothing: c.smoothing,
  tolerance: c.tolerance,
  rttWindow: c.rttWindow
})

/**
 * The model: the engine's own admission (`engine/admission.ts`, the code the Memory store runs) over a
 * rate table of the pure rate engine, keyed as the scripts key it in Redis.
 */
class Model {
  readonly rates = new Map<string, unknown>()
  readonly rate: Engine.RateEngine<unknown> | undefined
  readonly admitter: Admitter

  constructor(concurrency: Concurrency, rate: Strategy | undefined, readonly ttlMs: number) {
    const engine = rate === undefined ? undefined : Engine.rateEngine(rate)
    this.rate = engine
    const rates = this.rates
    this.admitter = new Admitter(
      concurrency,
      engine === undefined ? undefined : {
        check: (key, now, cost) => {
          const step = engine.check(rates.get(key), now, cost)
          if (step.decision.allowed) rates.set(key, step.state)
          return step.decision
        }
      },
      ttlMs
    )
  }

  get guard() {
    return this.admitter.guard
  }

  acquire(now: number, id: string, rateKey: string, cost: number) {
    return this.admitter.acquire(now, id, rateKey, cost)
  }

  release(now: number, id: string, dropped: boolean) {
    return this.admitter.release(now, id, dropped)
  }

  renew(now: number, ids: ReadonlyArray<string>) {
    const { deadline, gone, live } = this.admitter.renew(now, ids)
    return { live, gone, deadline }
  }
}

interface Expectation {
  readonly at: number
  readonly kind: "acquire" | "release" | "renew"
  readonly expected: unknown
  readonly persisted: boolean
}

const sortedStrings = (reply: Reply | undefined): Array<string> => (reply as ReadonlyArray<string>).slice().sort()

/** Reads a reply in the model's terms. */
const actualOf = (kind: Expectation["kind"], reply: Reply): unknown => {
  const parts = reply as ReadonlyArray<Reply>
  switch (kind) {
    case "acquire": {
      const [allowed, limit, remaining, resetAt, retryAfterMs, axis, expiresAt, reclaimed] = parts
      return {
        decision: { allowed: allowed === 1, limit, remaining, resetAt, retryAfterMs },
        axis,
        expiresAt,
        reclaimed: sortedStrings(reclaimed)
      }
    }
    case "release":
      return { released: parts[0], reclaimed: sortedStrings(parts[1]) }
    case "renew":
      return { live: parts[0], gone: parts[1], deadline: parts[2] }
  }
}

const runSequence = (env: RedisEnv, rng: Rng, index: number) =>
  Effect.gen(function*() {
    const concurrency = randomConcurrency(rng)
    const rate = randomRate(rng)
    const ttlMs = rng.int(5, 400)
    const model = new Model(concurrency, rate, ttlMs)
    const tag = `{${env.ns}:conc:${index}}`
    const keys = { leases: `${tag}#leases`, guard: `${tag}#guard` }
    const rateKeys = ["a", "b", "c"].map((k) => storeKey(tag, k))
    const steps: Array<Step> = []
    const expectations: Array<Expectation> = []
    const held: Array<string> = []
    let now = rng.next() < 0.5 ? 1_700_000_000_000 + rng.int(0, 1_000_000) : rng.int(1, 100_000)
    for (let i = 0; i < OPS_PER_SEQUENCE; i++) {
      const roll = rng.next()
      now += roll < 0.3
        ? 0
        : roll < 0.8
        ? rng.int(1, Math.max(1, Math.round(ttlMs / 3)))
        : rng.int(ttlMs - 1, ttlMs * 2)
      const op = rng.next()
      if (op < 0.5 || held.length === 0) {
        const id = rng.hex(32)
        const rateKey = rng.pick(rateKeys)
        // Emulate the rate key's expiry at the simulated instant (the scripts' TTLs are verified in the
        // rate differential test); then the rate state the model sees is the one Redis holds.
        const rateState = model.rates.get(rateKey)
        if (model.rate !== undefined && rateState !== undefined && now > model.rate.expiresAt(rateState, now)) {
          steps.push({ command: "DEL", args: [rateKey] })
          model.rates.delete(rateKey)
        }
        const cost = rng.next() < 0.8 ? 1 : rng.int(1, 5)
        const expected = model.acquire(now, id, rateKey, cost)
        if (expected.axis === "") held.push(id)
        const argv = {
          ...concurrencyArgv(concurrency),
          ...(rate === undefined ? {} : scriptsOf(rate).params),
          now,
          leaseId: id,
          ttlMs,
          cost
        }
        const admit = rate === undefined
          ? yield* call(env, "concurrency.acquire", keys, argv)
          : persisting(yield* call(env, `${scriptsOf(rate).strategy}.admit`, { ...keys, key: rateKey }, argv), 3)
        steps.push(admit)
        expectations.push({ at: steps.length - 1, kind: "acquire", expected, persisted: rate !== undefined })
      } else if (op < 0.85) {
        const id = rng.next() < 0.9 ? held.splice(rng.int(0, held.length - 1), 1)[0]! : rng.hex(32)
        const dropped = rng.next() < 0.25
        steps.push(
          yield* call(env, "concurrency.release", keys, {
            ...concurrencyArgv(concurrency),
            now,
            leaseId: id,
            dropped: dropped ? 1 : 0
          })
        )
        expectations.push({
          at: steps.length - 1,
          kind: "release",
          expected: model.release(now, id, dropped),
          persisted: false
        })
      } else {
        const ids = held.filter(() => rng.next() < 0.7).concat(rng.next() < 0.3 ? [rng.hex(32)] : [])
        steps.push(
          yield* call(env, "concurrency.renew", keys, {
            ...concurrencyArgv(concurrency),
            now,
            ttlMs,
            "leaseIds...": ids
          })
        )
        expectations.push({ at: steps.length - 1, kind: "renew", expected: model.renew(now, ids), persisted: false })
      }
    }
    steps.push(yield* call(env, "concurrency.read", keys, {}))
    return {
      label: `${tag} ${JSON.stringify({ concurrency, rate, ttlMs })}`,
      steps,
      expectations,
      model,
      minLimit: concurrency.minLimit,
      maxLimit: concurrency.maxLimit,
      initialLimit: concurrency.initialLimit
    }
  })

const guardState = (reply: Reply) => {
  const [leases, hash] = reply as ReadonlyArray<ReadonlyArray<string>>
  const fields = new Map<string, string>()
  for (let i = 0; i < hash!.length; i += 2) fields.set(hash![i]!, hash![i + 1]!)
  const number = (name: string) => fields.has(name) ? Number(fields.get(name)) : undefined
  return { held: leases!.length / 2, fields: number }
}

describe("concurrency admission in Redis", () => {
  layer(testRedisLayer(), { timeout: 300_000 })((it) => {
    it.effect(
      `agrees with the engine's guard over ${SEQUENCES * OPS_PER_SEQUENCE} random lease ops`,
      () =>
        Effect.gen(function*() {
          const env = yield* TestRedis
          const rng = prng(SEED)
          const tally = {
            acquired: 0,
            deniedConcurrency: 0,
            deniedRate: 0,
            released: 0,
            reclaimed: 0,
            renewed: 0,
            quotaSequences: 0
          }
          for (let batch = 0; batch < SEQUENCES; batch += 10) {
            const runs: Array<Effect.Effect.Success<ReturnType<typeof runSequence>>> = []
            for (let s = batch; s < Math.min(SEQUENCES, batch + 10); s++) runs.push(yield* runSequence(env, rng, s))
            const replies = yield* Effect.forEach(runs, (r) => transaction(env, r.steps), { concurrency: 4 })
            for (let i = 0; i < runs.length; i++) {
              const run = runs[i]!
              const got = replies[i]!
              if (run.label.includes(`"kind":"quota"`)) tally.quotaSequences++
              for (const e of run.expectations) {
                const reply = e.persisted ? persisted(got[e.at]!).reply : got[e.at]!
                expect(actualOf(e.kind, reply), `${run.label} step ${e.at}`).toEqual(e.expected)
                if (e.kind === "acquire") {
                  const axis = (e.expected as { axis: string }).axis
                  if (axis === "") tally.acquired++
                  else if (axis === "rate") tally.deniedRate++
                  else tally.deniedConcurrency++
                  tally.reclaimed += (e.expected as { reclaimed: ReadonlyArray<string> }).reclaimed.length
                } else if (e.kind === "release") tally.released += (e.expected as { released: number }).released
                else tally.renewed += (e.expected as { live: ReadonlyArray<string> }).live.length
              }
              const { fields, held } = guardState(got[got.length - 1]!)
              const guard = run.model.guard
              expect(held, run.label).toBe(run.model.admitter.held)
              expect(held, run.label).toBe(guard.inflight)
              // The estimate itself (fractional under gradient2), bit for bit; unset means never moved.
              const estimate: unknown = Reflect.get(guard, "estimate")
              expect(typeof estimate, "the guard keeps its estimate in a field named estimate").toBe("number")
              expect(fields("e") ?? Math.min(run.maxLimit, Math.max(run.minLimit, run.initialLimit)), run.label).toBe(
                estimate
              )
              expect(Math.floor(fields("e") ?? guard.limit), run.label).toBe(guard.limit)
              expect(fields("last") ?? 0, run.label).toBe(guard.lastRttMs)
              expect(fields("lt") ?? 0, run.label).toBe(guard.longRttMs)
              const n = fields("n") ?? 0
              expect(n === 0 ? 0 : (fields("sum") ?? 0) / n, run.label).toBe(guard.shortRttMs)
            }
          }
          console.log(`concurrency: ${JSON.stringify(tally)}`)
          expect(tally.acquired).toBeGreaterThan(0)
          expect(tally.deniedConcurrency).toBeGreaterThan(0)
          expect(tally.deniedRate).toBeGreaterThan(0)
          expect(tally.reclaimed).toBeGreaterThan(0)
          expect(tally.released).toBeGreaterThan(0)
          expect(tally.renewed).toBeGreaterThan(0)
          expect(tally.quotaSequences).toBeGreaterThan(0)
        }),
      300_000
    )
  })
})
