/**
 * Shadow mode (`shadow: true` on a policy, `shadow` / `serve --shadow` on the server): decided and
 * recorded as usual, never denied. The same seeded traffic is replayed with shadow off and on, and the
 * denials the enforced run answers must be exactly the shadow denials the shadowed run counts: in the
 * decisions (`Decision.shadowed`), in the Monitor snapshot and on `/metrics`.
 *
 * Real parts: the Memory door in process; our server on loopback, called over real gRPC through the
 * `ServiceBackend` client, `/metrics` read over real HTTP. Every policy's rate is slow (per hour), so a
 * run of a few seconds decides the same whatever the timing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as Cli from "../../src/server/Cli.js"
import { serverOptions, startupLine } from "../../src/server/Serve.js"
import { admitted, RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { prng } from "../support/prng.js"
import { valueOf } from "../support/prometheus.js"
import { servedWithMetrics } from "../support/servedWithMetrics.js"

const SEED = 0x5eed19
const CALLS = 240
const KEYS = ["alice", "bob", "carol", "dave", "erin", "frank"]

const policiesText = (shadow: boolean) => `
limiters:
  api:
    strategy: gcra
    limit: 8
    period: 1h
    burst: 8${shadow ? "\n    shadow: true" : ""}
  llm:
    tokenBudget:
      budget: 40
      windowMs: 1h${shadow ? "\n    shadow: true" : ""}
`

interface Tally {
  readonly answered: number
  readonly denied: number
  readonly shadowed: number
}

/** The seeded traffic: checks, batches and debits, the same sequence for the same seed. */
const replay = (limiter: RateLimiterService, seed: number) =>
  Effect.gen(function*() {
    const rng = prng(seed)
    const tally = { api: { answered: 0, denied: 0, shadowed: 0 }, llm: { answered: 0, denied: 0, shadowed: 0 } }
    const note = (policy: "api" | "llm", decision: { allowed: boolean; shadowed: boolean }) => {
      tally[policy].answered++
      if (!decision.allowed) tally[policy].denied++
      if (decision.shadowed) tally[policy].shadowed++
    }
    for (let i = 0; i < CALLS; i++) {
      const roll = rng.int(0, 9)
      if (roll < 6) {
        note("api", yield* limiter.check("api", rng.pick(KEYS), rng.int(1, 3)))
      } else if (roll < 8) {
        const keys = [rng.pick(KEYS), rng.pick(KEYS), rng.pick(KEYS)]
        for (const decision of yield* limiter.checkMany("api", keys, rng.int(1, 2))) note("api", decision)
      } else {
        note("llm", yield* limiter.debit("llm", rng.pick(KEYS), rng.int(1, 9)))
      }
    }
    return tally as { readonly api: Tally; readonly llm: Tally }
  })

const memoryLimiter = (shadow: boolean) =>
  Effect.flatMap(
    PolicyFile.parse(policiesText(shadow), "test"),
    (policies) => Effect.map(Layer.build(MemoryBackend.layer({ policies })), Context.get(RateLimiter))
  )

/** Our server on loopback (with /metrics), and a gRPC client of it. */
const served = (shadowPolicies: boolean, shadowServer: boolean) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(policiesText(shadowPolicies), "test")
    return yield* servedWithMetrics({ policies, ...(shadowServer ? { shadow: true } : {}) })
  })

describe("shadow mode", () => {
  it.scoped("in process: a shadowed policy never denies, and shadows exactly the enforced run's denials", () =>
    Effect.gen(function*() {
      const enforced = yield* replay(yield* memoryLimiter(false), SEED)
      const shadowed = yield* replay(yield* memoryLimiter(true), SEED)
      // The traffic really meets the limits, so the comparison means something.
      expect(enforced.api.denied).toBeGreaterThan(20)
      expect(enforced.llm.denied).toBeGreaterThan(5)
      expect(enforced.api.shadowed + enforced.llm.shadowed).toBe(0)
      for (const policy of ["api", "llm"] as const) {
        expect(shadowed[policy].answered).toBe(enforced[policy].answered)
        expect(shadowed[policy].denied).toBe(0)
        expect(shadowed[policy].shadowed).toBe(enforced[policy].denied)
      }
    }))

  it.scoped("a shadow allowance keeps the real decision's limit, remaining and resetAt; retryAfterMs is 0", () =>
    Effect.gen(function*() {
      const enforced = yield* memoryLimiter(false)
      const shadowed = yield* memoryLimiter(true)
      for (let i = 0; i < 8; i++) {
        yield* enforced.check("api", "k")
        yield* shadowed.check("api", "k")
      }
      const denied = yield* enforced.check("api", "k")
      const shadow = yield* shadowed.check("api", "k")
      expect(denied.allowed).toBe(false)
      expect(denied.retryAfterMs).toBeGreaterThan(0)
      expect({ ...shadow }).toEqual({
        allowed: true,
        limit: denied.limit,
        remaining: denied.remaining,
        resetAt: denied.resetAt,
        retryAfterMs: 0,
        shadowed: true
      })
      expect(shadow.degraded).toBe(false)
      // Peek is a read: it answers the real state (a denial), in shadow mode too.
      expect((yield* shadowed.peek("api", "k")).allowed).toBe(false)
      // An ordinary decision reads both flags as false, with its five own fields only.
      const fresh = yield* shadowed.check("api", "fresh")
      expect([fresh.shadowed, fresh.degraded]).toEqual([false, false])
      expect(Object.keys(fresh)).toEqual(["allowed", "limit", "remaining", "resetAt", "retryAfterMs"])
    }))

  it.scoped("a shadowed admitter admits past its ceiling without holding a slot", () =>
    Effect.gen(function*() {
      const limiterOf = (shadow: boolean) =>
        Effect.flatMap(
          PolicyFile.parse(
            `limiters:\n  pool: { concurrency: { maxLimit: 1, minLimit: 1 }, shadow: ${shadow} }\n`,
            "t"
          ),
          (policies) => Effect.map(Layer.build(MemoryBackend.layer({ policies })), Context.get(RateLimiter))
        )
      const enforced = yield* limiterOf(false)
      const shadowed = yield* limiterOf(true)
      const first = yield* shadowed.admit("pool", "k")
      expect(first.held).toBe(true)
      const second = yield* shadowed.admit("pool", "k")
      expect(second.decision.allowed).toBe(true)
      expect(second.decision.shadowed).toBe(true)
      expect(second.held).toBe(false)
      expect(second.bindingAxis).toBe("")
      // `admitted` runs the work of a shadow allowance (and refuses it when enforced).
      yield* enforced.admit("pool", "k")
      const ran = yield* Effect.either(
        admitted("pool", "k")(Effect.succeed("ran")).pipe(Effect.provideService(RateLimiter, shadowed))
      )
      expect(ran._tag === "Right" ? ran.right : ran.left._tag).toBe("ran")
      const refused = yield* Effect.either(
        admitted("pool", "k")(Effect.succeed("ran")).pipe(Effect.provideService(RateLimiter, enforced))
      )
      expect(refused._tag === "Left" ? refused.left._tag : refused.right).toBe("RateLimited")
    }))

  for (
    const [label, policies, server] of [["shadow: true on the policies", true, false], [
      "the server-wide switch",
      false,
      true
    ]] as const
  ) {
    it.scoped(`served (${label}): the Monitor and /metrics count the enforced run's denials as shadow denials`, () =>
      Effect.gen(function*() {
        const off = yield* served(false, false)
        const enforced = yield* replay(off.client, SEED)
        const on = yield* served(policies, server)
        const shadowed = yield* replay(on.client, SEED)

        expect(enforced.api.denied).toBeGreaterThan(20)
        // Over the wire a shadow allowance is a plain allowance: the proto has no shadowed field.
        expect(shadowed.api.denied + shadowed.llm.denied).toBe(0)
        expect(shadowed.api.shadowed + shadowed.llm.shadowed).toBe(0)

        const before = (yield* off.hub.snapshot).policies.find((p) => p.name === "api")!
        const after = (yield* on.hub.snapshot).policies.find((p) => p.name === "api")!
        expect(before.deniedTotal).toBe(enforced.api.denied)
        expect(before.shadow).toBeUndefined()
        expect(after.shadow).toBe(true)
        expect(after.deniedTotal).toBe(0)
        expect(after.denied).toBe(0)
        expect(after.shadowDeniedTotal).toBe(enforced.api.denied)
        expect(after.shadowDenied).toBe(enforced.api.denied)
        expect(after.allowedTotal).toBe(enforced.api.answered)
        // No caller was denied: nothing in the denial ring.
        expect((yield* on.hub.snapshot).recentDenials).toEqual([])

        const offPage = yield* off.scrape
        const onPage = yield* on.scrape
        expect(valueOf(offPage, "throttlekit_denied_total", { policy: "api" })).toBe(enforced.api.denied)
        expect(valueOf(offPage, "throttlekit_shadow_denied_total", { policy: "api" })).toBeUndefined()
        expect(valueOf(onPage, "throttlekit_denied_total", { policy: "api" })).toBe(0)
        expect(valueOf(onPage, "throttlekit_shadow_denied_total", { policy: "api" })).toBe(enforced.api.denied)
        expect(valueOf(onPage, "throttlekit_allowed_total", { policy: "api" })).toBe(enforced.api.answered)
      }))
  }

  it.effect("the policy file takes shadow: true | false on every kind, and nothing else", () =>
    Effect.gen(function*() {
      const set = yield* PolicyFile.parse(
        `
limiters:
  a: { strategy: fixedWindow, limit: 1, windowMs: 1000, shadow: true }
  b: { strategy: fixedWindow, limit: 1, windowMs: 1000, shadow: false }
  c: { tokenBudget: { budget: 5, windowMs: 1000 }, shadow: true }
  d: { concurrency: { maxLimit: 4 }, shadow: true }
  e: { fairEscrow: { limit: 10, windowMs: 1000 }, shadow: true }
`,
        "test"
      )
      expect(set.policies.map((p) => p.shadow)).toEqual([true, undefined, true, true, true])
      expect("shadow" in set.policies[1]!).toBe(false)
      const bad = yield* Effect.flip(
        PolicyFile.parse("limiters:\n  a: { strategy: fixedWindow, limit: 1, windowMs: 1000, shadow: yes }\n", "t")
      )
      expect(bad.path).toBe("limiters.a.shadow")
      expect(bad.reason).toContain("expected true or false")
      const nested = yield* Effect.flip(
        PolicyFile.parse("limiters:\n  c: { tokenBudget: { budget: 5, windowMs: 1000, shadow: true } }\n", "t")
      )
      expect(nested.path).toBe("limiters.c.tokenBudget.shadow")
      // Written in code: the schema checks it.
      const coded = yield* Effect.flip(MemoryBackend.makeStore({
        policies: [{
          kind: "limiter",
          name: "x",
          prefix: "x",
          maxKeys: 1,
          strategy: { kind: "fixedWindow", limit: 1, windowMs: 1000 },
          shadow: "yes" as unknown as boolean
        }]
      }))
      expect(coded.path).toBe("limiters.x.shadow")
    }))

  it.effect("serve --shadow: a switch (no value), once, passed to the server and named on the startup line", () =>
    Effect.gen(function*() {
      const parsed = yield* Cli.parse(["serve", "--config", "p.yaml", "--shadow"])
      expect(parsed._tag === "Serve" && parsed.args.shadow).toBe(true)
      const plain = yield* Cli.parse(["serve", "--config", "p.yaml"])
      expect(plain._tag === "Serve" && plain.args.shadow).toBeUndefined()
      expect((yield* Effect.flip(Cli.parse(["serve", "-c", "p", "--shadow=yes"]))).reason).toBe(
        "--shadow takes no value"
      )
      expect((yield* Effect.flip(Cli.parse(["serve", "-c", "p", "--shadow", "--shadow"]))).reason)
        .toBe("--shadow given more than once")
      if (parsed._tag !== "Serve") return
      const args: Cli.ServeArgs = {
        ...parsed.args,
        store: { kind: "memory" },
        monitorSecret: Option.none(),
        fleetSecret: Option.none(),
        adminSecret: Option.none(),
        lens: Option.none()
      }
      const policies = yield* PolicyFile.parse(policiesText(false), "test")
      expect(serverOptions(args, policies, undefined).shadow).toBe(true)
      const line = startupLine(
        { address: "127.0.0.1:1", security: "insecure" } as Parameters<typeof startupLine>[0],
        args,
        policies
      )
      expect(line).toContain("fail=open, shadow=all]")
    }))
})
