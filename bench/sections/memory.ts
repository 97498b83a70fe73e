/**
 * Memory: the engine's check as a plain function (the floor of anything in-process), the Memory door's
 * check through the `RateLimiter` service, and rate-limiter-flexible's `RateLimiterMemory.consume`, on one
 * hot key and on 10k keys.
 *
 * `memory.vsRlf` is the Memory door over rate-limiter-flexible in the less favourable of the two key
 * shapes. The Effect floor row runs the engine's check inside `Effect.sync` in the same Effect loop as
 * the Memory door: what any Effect call costs before a limiter adds anything.
 */
import { Effect, ManagedRuntime } from "effect"
import { RateLimiterMemory } from "rate-limiter-flexible"
import { rateEngine } from "../../src/engine/index.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { effectBatched } from "../effectWorkloads.js"
import { measure, type Plan, promiseBatched, type Result, syncBatched, type Workload } from "../harness.js"
import { benchPolicy, gcraStrategy, HOT_KEY, keyOf, LIMIT_PER_SEC, POLICY } from "../policies.js"
import { type Comparison, ratio, type Section, type SectionOutcome } from "../section.js"

const ENGINE = "engine.check (plain function)"
const OURS = "MemoryBackend.check (service)"
const RLF = "rate-limiter-flexible Memory.consume"
const FLOOR = "Effect.sync(engine.check)"

const expectAllowed = (impl: string, allowed: boolean) => {
  if (!allowed) throw new Error(`${impl}: the first check was denied; the bench policy must allow everything`)
}

/** The engine with its states in a Map, as a plain in-process limiter would hold them. */
const engineCheck = (keyAt: (i: number) => string) => {
  const engine = rateEngine(gcraStrategy)
  const states = new Map<string, unknown>()
  return (i: number) => {
    const key = keyAt(i)
    const step = engine.check(states.get(key), Date.now(), 1)
    if (step.decision.allowed) states.set(key, step.state)
    return step.decision
  }
}

const engineWorkload = (keyAt: (i: number) => string): Workload => {
  const check = engineCheck(keyAt)
  return {
    ...syncBatched(ENGINE, true, check),
    verify: () => Promise.resolve(expectAllowed(ENGINE, check(0).allowed))
  }
}

const floorWorkload = (keyAt: (i: number) => string): Workload => {
  const check = engineCheck(keyAt)
  return effectBatched(FLOOR, Effect.runPromise, (i) => Effect.sync(() => check(i)), 1000, false)
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const runtime = ManagedRuntime.make(MemoryBackend.layer({ policies: [benchPolicy] }))
  try {
    const limiter = await runtime.runPromise(RateLimiter)
    const rlf = new RateLimiterMemory({ points: LIMIT_PER_SEC, duration: 1, keyPrefix: "rlf" })
    const results: Array<Result> = []
    const shapes = [
      { scenario: "memory.hotKey", keyAt: (_: number) => HOT_KEY },
      { scenario: "memory.keys10k", keyAt: keyOf }
    ]
    for (const { keyAt, scenario } of shapes) {
      const ours: Workload = {
        ...effectBatched(OURS, runtime.runPromise, (i) => limiter.check(POLICY, keyAt(i))),
        verify: () => runtime.runPromise(limiter.check(POLICY, keyAt(0))).then((d) => expectAllowed(OURS, d.allowed))
      }
      const incumbent: Workload = {
        ...promiseBatched(RLF, false, (i) => rlf.consume(keyAt(i))),
        // consume rejects when the key is over its points.
        verify: () => rlf.consume(keyAt(0)).then(() => undefined)
      }
      results.push(...(await measure(scenario, [engineWorkload(keyAt), ours, incumbent, floorWorkload(keyAt)], plan)))
    }
    const hot = ratio(results, "memory.hotKey.vsRlf", "memory.hotKey", OURS, RLF)
    const many = ratio(results, "memory.keys10k.vsRlf", "memory.keys10k", OURS, RLF)
    const worst = hot.value <= many.value ? hot : many
    const comparisons: Array<Comparison> = [
      {
        name: "memory.vsRlf",
        value: worst.value,
        unit: "x",
        detail: `the lower of hot key and 10k keys (${worst.detail})`,
        target: { op: ">=", value: 2 },
        headline: true
      },
      hot,
      many,
      ratio(results, "memory.hotKey.vsEffectFloor", "memory.hotKey", OURS, FLOOR),
      ratio(results, "memory.hotKey.effectFloorVsRlf", "memory.hotKey", FLOOR, RLF),
      ratio(results, "memory.hotKey.engineVsRlf", "memory.hotKey", ENGINE, RLF),
      ratio(results, "memory.hotKey.serviceVsEngine", "memory.hotKey", OURS, ENGINE),
      ratio(results, "memory.keys10k.serviceVsEngine", "memory.keys10k", OURS, ENGINE)
    ]
    return { results, comparisons, skipped: [] }
  } finally {
    await runtime.dispose()
  }
}

/** The memory section. */
export const memory: Section = { name: "memory", run }
