/**
 * The Lens's history over a real hub, under `TestClock`: each sample closes an interval with exactly the
 * decisions made in it, the picture adds the live interval up to now, and the ring keeps the last
 * `samples` intervals only (the first one then starts where the dropped one ended).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { DecisionData } from "../../../src/Decision.js"
import * as PolicyFile from "../../../src/PolicyFile.js"
import * as History from "../../../src/server/lens/History.js"
import type { LensSnapshot } from "../../../src/server/lens/LensSnapshot.js"
import * as Hub from "../../../src/server/monitor/Hub.js"
import { lensConfig } from "./lensConfig.js"

const allow: DecisionData = { allowed: true, limit: 3, remaining: 2, resetAt: 0, retryAfterMs: 0 }
const deny: DecisionData = { allowed: false, limit: 3, remaining: 0, resetAt: 0, retryAfterMs: 500 }

const streams = { open: 0, max: 16 }

/** `n` decisions of `login` on key `k`. */
const decide = (hub: Hub.Hub, decision: DecisionData, n: number) =>
  Effect.repeatN(hub.recordDecision("login", "k", decision, 0.1, ""), n - 1)

/** Moves the clock and lets the sampling fiber record what came due. */
const advance = (ms: number) => Effect.zipRight(TestClock.adjust(ms), Effect.yieldNow())

describe("the Lens history", () => {
  it.scoped("samples each interval exactly, adds the live one, and keeps the last `samples`", () =>
    Effect.gen(function*() {
      const policies = yield* PolicyFile.parse(lensConfig, "test")
      const hub = yield* Hub.make({ policies, nodeId: "n1" })
      const history = yield* History.make(hub, { sampleMs: 5000, samples: 3 })
      const picture = Effect.map(hub.snapshot, (snapshot) => history.picture(snapshot, 50, streams))
      const login = (p: LensSnapshot) => p.policies.find((policy) => policy.name === "login")!

      // Nothing sampled yet: the live interval from the start to now.
      yield* decide(hub, allow, 2)
      yield* decide(hub, deny, 1)
      yield* advance(1000)
      const early = yield* picture
      expect(early.since).toBe(0)
      expect(early.at).toEqual([1000])
      expect(login(early).allowedHistory).toEqual([2])
      expect(login(early).deniedHistory).toEqual([1])

      // The sample at 5 s closes the interval; no live interval at the sample's own time.
      yield* advance(4000)
      const sampled = yield* picture
      expect(sampled.at).toEqual([5000])
      expect(login(sampled).allowedHistory).toEqual([2])
      expect(login(sampled).deniedHistory).toEqual([1])

      yield* decide(hub, allow, 1)
      yield* advance(2000)
      const live = yield* picture
      expect(live.at).toEqual([5000, 7000])
      expect(login(live).allowedHistory).toEqual([2, 1])
      expect(login(live).deniedHistory).toEqual([1, 0])

      // 10 s, 15 s (nothing), then 3 denials before 20 s: the ring of 3 drops the first interval.
      yield* advance(3000)
      yield* advance(5000)
      yield* decide(hub, deny, 3)
      yield* advance(5000)
      const full = yield* picture
      expect(full.since).toBe(5000)
      expect(full.at).toEqual([10_000, 15_000, 20_000])
      expect(login(full).allowedHistory).toEqual([1, 0, 0])
      expect(login(full).deniedHistory).toEqual([0, 0, 3])
      expect(full.historyMs).toBe(15_000)
      // Other policies: zero in every interval; totals since the start stay whole.
      expect(full.policies.find((p) => p.name === "search")!.allowedHistory).toEqual([0, 0, 0])
      expect(login(full)).toMatchObject({ allowedTotal: 3, deniedTotal: 4 })
      expect(full.recentDenials).toHaveLength(4)
      expect(history.picture(yield* hub.snapshot, 2, streams).recentDenials).toHaveLength(2)
    }))

  it.scoped("follows a reloaded hub: an added policy from its first sample, a removed one gone, a renewed one from zero", () =>
    Effect.gen(function*() {
      const policies = yield* PolicyFile.parse(lensConfig, "test")
      const hub = yield* Hub.make({ policies, nodeId: "n1" })
      const history = yield* History.make(hub, { sampleMs: 5000, samples: 3 })
      const picture = Effect.map(hub.snapshot, (snapshot) => history.picture(snapshot, 50, streams))
      yield* decide(hub, allow, 2)
      yield* advance(5000)

      // `login` becomes a gcra limiter (its statistics renewed), `export` goes, `fresh` comes.
      const reloaded = yield* PolicyFile.parse(
        "limiters:\n  login:\n    strategy: gcra\n    limit: 3\n    period: 1m\n" +
          "  fresh:\n    strategy: gcra\n    limit: 3\n    period: 1m\n",
        "test"
      )
      hub.reload(reloaded.policies)
      yield* Effect.repeatN(hub.recordDecision("fresh", "k", allow, 0.1, ""), 2)
      yield* decide(hub, allow, 1)
      yield* advance(5000)
      const after = yield* picture
      expect(after.policies.map((p) => p.name)).toEqual(["login", "fresh"])
      const of = (name: string) => after.policies.find((p) => p.name === name)!
      expect(of("login").allowedHistory).toEqual([2, 1])
      expect(of("fresh").allowedHistory).toEqual([0, 3])
    }))
})
