/**
 * Memory: the engine's check as a plain function with its states in a Map (the floor of anything
 * in-process), the Memory door's synchronous `Local` limiter (a plain function returning an `Either`,
 * taken once from the layer and bound to the policy once, as a hot loop on one policy uses it; by policy
 * name per call it costs one Map lookup more), the same door's check through the `RateLimiter` service, and
 * rate-limiter-flexible's `RateLimiterMemory.consume`, on one hot key and on 10k keys. The local and the
 * service rows share one layer, so they share key tables, as an application mixing the two would.
 *
 * `memory.vsRlf` is the local door over rate-limiter-flexible in the less favourable of the two key
 * shapes; `memory.service.vsRlf` is the same for the Effect service, kept visible beside it. The Effect
 * floor row runs the engine's check inside `Effect.sync` in the same Effect loop as the service: what any
 * Effect call costs before a limiter adds anything (the reason the hot loop has a plain-function door);
 * `memory.serviceVsEffectFloor` is the service over it, the lower of the two key shapes (target ≥ 0.9).
 * The Effect incumbent row is `@effect/experimental`'s `RateLimiter.consume` on its memory store, in the
 * same Effect loop (token-bucket, the bench policy: see bench/experimental.ts);
 * `memory.serviceVsExperimental` is the service over it (target ≥ 2).
 */
import { Effect, Either, ManagedRuntime } from "effect"
import { RateLimiterMemory } from "rate-limiter-flexible"
import { Admitter } from "../../src/engine/admission.js"
import { rateEngine } from "../../src/engine/index.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { effectBatched } from "../effectWorkloads.js"
import { consume, experimentalMemory, limiterOf, verifyConsume } from "../experimental.js"
import { measure, type Plan, promiseBatched, type Result, syncBatched, type Workload } from "../harness.js"
import { benchPolicy, gcraStrategy, HOT_KEY, keyOf, LIMIT_PER_SEC, POLICY } from "../policies.js"
import { type Comparison, ratio, type Section, type SectionOutcome } from "../section.js"

const ENGINE = "engine.check (plain function)"
const LOCAL = "MemoryBackend.Local.limiter(policy) (sync)"
const SERVICE = "MemoryBackend.check (service)"
const RLF = "rate-limiter-flexible Memory.consume"
const FLOOR = "Effect.sync(engine.check)"
const EXPERIMENTAL = "@effect/experimental consume (memory store)"

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

const LEASES_FEW = "admission, 1k leases held"
const LEASES_MANY = "admission, 80k leases held"
const MAP_FEW = "Map set+get+delete, 1k entries (floor)"
const MAP_MANY = "Map set+get+delete, 80k entries (floor)"

/** A lease record, shaped as the admission's. */
class FloorLease {
  constructor(readonly acquiredAt: number, readonly expiresAt: number) {}
}

/**
 * The floor under `memory.leases`: a bare `Map` holding `held` entries, with one new entry set, read and
 * deleted per op (what any lease table keyed by id pays). How much its cost grows from 1k to 80k entries
 * is the CPU caches', not the admission's.
 */
const mapFloorWorkload = (impl: string, held: number): Workload => {
  const table = new Map<string, FloorLease>()
  for (let i = 0; i < held; i++) table.set(`held-${i}`, new FloorLease(i, i + 315_360_000_000))
  let now = 1_700_000_000_000
  return syncBatched(impl, false, (i) => {
    now++
    const id = `op-${i}`
    table.set(id, new FloorLease(now, now + 315_360_000_000))
    const found = table.get(id)
    table.delete(id)
    return found
  })
}

/**
 * One acquire and one release of the engine's admission (what the Memory store runs per scoped admit: an
 * acquire under a minted lease id, then a release by that id) while `held` other leases stay held, at a
 * clock that moves 1 ms per op: the cost must not grow with the number of leases held (a sweep touches
 * only the leases that lapsed; an id names its slot, so finding it costs the same at 80k as at 1k).
 */
const admissionWorkload = (impl: string, held: number): Workload => {
  // Ten years: the held leases never lapse while the clock moves 1 ms per op.
  const ttlMs = 315_360_000_000
  const admitter = new Admitter(
    {
      algorithm: "fixed",
      minLimit: held + 1,
      maxLimit: held + 1,
      initialLimit: held + 1,
      backoffRatio: 0.9,
      smoothing: 0.2,
      tolerance: 2,
      rttWindow: 100
    },
    undefined,
    ttlMs
  )
  let now = 1_700_000_000_000
  for (let i = 0; i < held; i++) admitter.admit(now, "k", 1)
  return syncBatched(impl, true, () => {
    now++
    const admitted = admitter.admit(now, "k", 1)
    if (admitted.axis !== "") throw new Error(`${impl}: the acquire was denied`)
    return admitter.release(now, admitted.leaseId, false)
  })
}

const run = async (plan: Plan): Promise<SectionOutcome> => {
  const runtime = ManagedRuntime.make(MemoryBackend.layer({ policies: [benchPolicy] }))
  const experimental = experimentalMemory()
  try {
    const experimentalLimiter = await limiterOf(experimental)
    const limiter = await runtime.runPromise(RateLimiter)
    const local = await runtime.runPromise(MemoryBackend.Local)
    const bound = local.limiter(POLICY)
    if (Either.isLeft(bound)) throw new Error(`${LOCAL}: ${bound.left.message}`)
    const check = bound.right
    const rlf = new RateLimiterMemory({ points: LIMIT_PER_SEC, duration: 1, keyPrefix: "rlf" })
    const results: Array<Result> = []
    const shapes = [
      { scenario: "memory.hotKey", keyAt: (_: number) => HOT_KEY },
      { scenario: "memory.keys10k", keyAt: keyOf }
    ]
    for (const { keyAt, scenario } of shapes) {
      const localCheck: Workload = {
        ...syncBatched(LOCAL, true, (i) => check(keyAt(i))),
        verify: () => {
          const first = check(keyAt(0))
          if (Either.isLeft(first)) return Promise.reject(first.left)
          return Promise.resolve(expectAllowed(LOCAL, first.right.allowed))
        }
      }
      const service: Workload = {
        ...effectBatched(SERVICE, runtime.runPromise, (i) => limiter.check(POLICY, keyAt(i))),
        verify: () => runtime.runPromise(limiter.check(POLICY, keyAt(0))).then((d) => expectAllowed(SERVICE, d.allowed))
      }
      const incumbent: Workload = {
        ...promiseBatched(RLF, false, (i) => rlf.consume(keyAt(i))),
        // consume rejects when the key is over its points.
        verify: () => rlf.consume(keyAt(0)).then(() => undefined)
      }
      const effectIncumbent: Workload = {
        ...effectBatched(
          EXPERIMENTAL,
          experimental.runPromise,
          (i) => consume(experimentalLimiter, keyAt(i)),
          1000,
          false
        ),
        verify: () => verifyConsume(experimental, experimentalLimiter, keyAt(0))
      }
      const workloads = [engineWorkload(keyAt), localCheck, service, incumbent, floorWorkload(keyAt), effectIncumbent]
      results.push(...(await measure(scenario, workloads, plan)))
    }
    results.push(
      ...(await measure(
        "memory.leases",
        [
          admissionWorkload(LEASES_FEW, 1_000),
          admissionWorkload(LEASES_MANY, 80_000),
          mapFloorWorkload(MAP_FEW, 1_000),
          mapFloorWorkload(MAP_MANY, 80_000)
        ],
        plan
      ))
    )
    const comparisons: Array<Comparison> = [
      ...lowerOfShapes(results, "vsRlf", LOCAL, RLF, "the local plain-function door", 2),
      ...lowerOfShapes(results, "service.vsRlf", SERVICE, RLF, "the Effect service"),
      ratio(results, "memory.hotKey.localVsEngine", "memory.hotKey", LOCAL, ENGINE),
      ratio(results, "memory.keys10k.localVsEngine", "memory.keys10k", LOCAL, ENGINE),
      ...lowerOfShapes(
        results,
        "serviceVsEffectFloor",
        SERVICE,
        FLOOR,
        "the Effect service over the Effect floor",
        0.9
      ),
      ...lowerOfShapes(
        results,
        "serviceVsExperimental",
        SERVICE,
        EXPERIMENTAL,
        "the Effect service over @effect/experimental's RateLimiter (memory store, token-bucket)",
        2
      ),
      ratio(results, "memory.hotKey.effectFloorVsRlf", "memory.hotKey", FLOOR, RLF),
      ratio(results, "memory.hotKey.engineVsRlf", "memory.hotKey", ENGINE, RLF),
      // Cost per acquire+release at 80k held over at 1k (the inverse of the throughput ratio).
      {
        ...ratio(results, "memory.leases.cost80kVs1k", "memory.leases", LEASES_FEW, LEASES_MANY),
        detail: "memory.leases: time per acquire+release with 80k leases held / with 1k held (lower is better)",
        target: { op: "<=", value: 1.5 },
        headline: true
      },
      {
        ...ratio(results, "memory.leases.mapFloor80kVs1k", "memory.leases", MAP_FEW, MAP_MANY),
        detail: "memory.leases: a bare Map's set+get+delete with 80k entries / with 1k (the floor of the row above)"
      }
    ]
    return { results, comparisons, skipped: [] }
  } finally {
    await runtime.dispose()
    await experimental.dispose()
  }
}

/**
 * `impl` over `theirs` on each key shape (`memory.hotKey.<suffix>`, `memory.keys10k.<suffix>`) and the
 * lower of the two (`memory.<suffix>`); with a `target`, that is one of the ratios (a headline).
 */
const lowerOfShapes = (
  results: ReadonlyArray<Result>,
  suffix: string,
  impl: string,
  theirs: string,
  label: string,
  target?: number
): Array<Comparison> => {
  const hot = ratio(results, `memory.hotKey.${suffix}`, "memory.hotKey", impl, theirs)
  const many = ratio(results, `memory.keys10k.${suffix}`, "memory.keys10k", impl, theirs)
  const worst = hot.value <= many.value ? hot : many
  return [
    {
      name: `memory.${suffix}`,
      value: worst.value,
      unit: "x",
      detail: `${label}, the lower of hot key and 10k keys (${worst.detail})`,
      headline: target !== undefined,
      ...(target === undefined ? {} : { target: { op: ">=", value: target } })
    },
    hot,
    many
  ]
}

/** The memory section. */
export const memory: Section = { name: "memory", run }
