/**
 * The policies every benchmark uses, so each door and each incumbent limits the same shape: GCRA with a
 * limit so high that nothing is denied while the bench runs. The bench measures the cost of the
 * decision on the allow path (the path nearly every request takes); a denial that never comes cannot
 * make one side look cheaper than the other.
 */
import type { LimiterPolicy, Strategy } from "../src/Policy.js"

/** Units per second every limit allows (far above any rate the bench reaches). */
export const LIMIT_PER_SEC = 1_000_000_000

/** The GCRA strategy of every rate policy. */
export const gcraStrategy: Extract<Strategy, { kind: "gcra" }> = {
  kind: "gcra",
  limit: LIMIT_PER_SEC,
  periodMs: 1000,
  burst: LIMIT_PER_SEC
}

/** The name of the rate policy served by every door. */
export const POLICY = "bench"

/** The rate policy (room for the 10k-key scenarios without eviction). */
export const benchPolicy: LimiterPolicy = {
  kind: "limiter",
  name: POLICY,
  prefix: "bench",
  strategy: gcraStrategy,
  maxKeys: 100_000
}

/** The number of distinct keys of the many-keys scenarios. */
export const KEY_COUNT = 10_000

/** `KEY_COUNT` keys, built once so no scenario pays for string building in its loop. */
export const keys: ReadonlyArray<string> = Array.from({ length: KEY_COUNT }, (_, i) => `user-${i}`)

/** The key of operation `i` in a many-keys scenario. */
export const keyOf = (i: number): string => keys[i % KEY_COUNT]!

/** The one key of a hot-key scenario. */
export const HOT_KEY = "hot"

/** The federated policy the fleet tiers share (served by the bench server, see childServer.ts). */
export const FLEET_POLICY = "fleet"

/** The budget domain of the fleet tiers: a tier-1 Check on this key and a tier-2 lease of it share it. */
export const FLEET_DOMAIN = "bench-domain"
