/**
 * The Memory door beyond the shared conformance suite (in its own file, since a suite-level layer
 * and `TestClock` tests do not mix in one file): what only an in-process backend with `TestClock`
 * can show exactly: lease expiry and reclaim, keep-alive heartbeats, adaptive contraction on dropped
 * releases, lease ids that name their slot (an old id never frees the slot's next lease), leases held
 * across a reload, the key tables that never forget a key still counting, and `layerConfig` (its options
 * read from `Config`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Config, ConfigError, Effect, Fiber, Layer, TestClock } from "effect"
import { slotOfLeaseId } from "../../src/engine/leaseIds.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { AdmitterPolicy, Policy } from "../../src/Policy.js"
import { PolicySet } from "../../src/PolicySet.js"
import { RateLimiter } from "../../src/services/RateLimiter.js"
import { withConfig } from "../support/config.js"
import { prng } from "../support/prng.js"

const pool = (name: string, algorithm: "fixed" | "aimd", min: number, max: number): AdmitterPolicy => ({
  kind: "admitter",
  name,
  prefix: name,
  maxKeys: 100,
  concurrency: {
    algorithm,
    minLimit: min,
    maxLimit: max,
    initialLimit: max,
    backoffRatio: 0.5,
    smoothing: 0.2,
    tolerance: 2,
    rttWindow: 10
  }
})

const policies: ReadonlyArray<Policy> = [
  pool("pool", "fixed", 2, 2),
  pool("adaptive", "aimd", 1, 8),
  {
    kind: "limiter",
    name: "small",
    prefix: "small",
    maxKeys: 3,
    strategy: { kind: "fixedWindow", limit: 1, windowMs: 60_000 }
  },
  { kind: "meter", name: "llm", prefix: "llm", maxKeys: 100, budget: 10, windowMs: 1000, shared: false }
]

const backend = MemoryBackend.layer({ policies, leaseTtlMs: 2000 })

describe("MemoryBackend with TestClock", () => {
  it.scoped("an abandoned lease is reclaimed after its TTL and the slot comes back", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const a = yield* limiter.leases.acquire("pool", "k")
      const b = yield* limiter.leases.acquire("pool", "k")
      expect([a.held, b.held]).toEqual([true, true])
      expect(a.leaseExpiresAt).toBe(2000)
      expect((yield* limiter.leases.acquire("pool", "k")).bindingAxis).toBe("concurrency")
      yield* TestClock.adjust(1999)
      expect((yield* limiter.leases.acquire("pool", "k")).held).toBe(false)
      yield* TestClock.adjust(1)
      const c = yield* limiter.leases.acquire("pool", "k")
      expect(c.held).toBe(true)
      const beat = yield* limiter.leases.heartbeat([a.leaseId, c.leaseId])
      expect(beat).toEqual({ live: [c.leaseId], reclaimed: [a.leaseId], nextDeadline: 4000 })
    }).pipe(Effect.provide(backend)))

  it.scoped("a heartbeat keeps a lease past its TTL", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const a = yield* limiter.leases.acquire("pool", "k")
      yield* TestClock.adjust(1500)
      expect((yield* limiter.leases.heartbeat([a.leaseId])).live).toEqual([a.leaseId])
      yield* TestClock.adjust(1500)
      expect((yield* limiter.leases.heartbeat([a.leaseId])).live).toEqual([a.leaseId])
    }).pipe(Effect.provide(backend)))

  it.scoped("a scoped admit holds its slot through a 3 s hold with a 2 s TTL (kept alive by default)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const held = yield* Effect.scoped(Effect.gen(function*() {
        const admission = yield* limiter.admit("pool", "k")
        yield* TestClock.adjust(3000)
        const beat = yield* limiter.leases.heartbeat([admission.leaseId])
        return [admission.held, admission.reclaimed, beat.live.length] as const
      }))
      expect(held).toEqual([true, false, 1])
    }).pipe(Effect.provide(backend)))

  it.scoped("with keepAlive: false, a 3 s hold loses its lease to the sweep", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const admission = yield* limiter.admit("pool", "k", { keepAlive: false })
      yield* TestClock.adjust(3000)
      const beat = yield* limiter.leases.heartbeat([admission.leaseId])
      expect(beat.reclaimed).toEqual([admission.leaseId])
    }).pipe(Effect.provide(backend)))

  it.scoped("interruptOnReclaim interrupts the holder when the lease is lost", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const holder = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const admission = yield* limiter.admit("pool", "k", { keepAlive: true, interruptOnReclaim: true })
        // Someone else releases the lease out from under us (e.g. an operator, or a server restart).
        yield* limiter.leases.release(admission.leaseId, true)
        yield* Effect.never
      })))
      yield* TestClock.adjust(1000)
      const exit = yield* Fiber.await(holder)
      expect(exit._tag).toBe("Failure")
    }).pipe(Effect.provide(backend)))

  it.scoped("a released id names nothing once its slot holds another lease: release and heartbeat leave that one", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const a = yield* limiter.leases.acquire("adaptive", "k")
      yield* limiter.leases.release(a.leaseId, false)
      const b = yield* limiter.leases.acquire("adaptive", "k")
      // b took a's slot (the slot a lease id names), under new random bits.
      expect(slotOfLeaseId(b.leaseId)).toBe(slotOfLeaseId(a.leaseId))
      expect(b.leaseId).not.toBe(a.leaseId)
      // a's id again, as an overload: were it b's slot freed as dropped, the adaptive ceiling would halve.
      yield* limiter.leases.release(a.leaseId, true)
      const beat = yield* limiter.leases.heartbeat([a.leaseId, b.leaseId])
      expect(beat).toEqual({ live: [b.leaseId], reclaimed: [a.leaseId], nextDeadline: 2000 })
      const c = yield* limiter.leases.acquire("adaptive", "k")
      expect([c.decision.limit, c.decision.remaining]).toEqual([8, 6])
      // Another policy's lease id releases there and only there.
      const pooled = yield* limiter.leases.acquire("pool", "k")
      yield* limiter.leases.release(pooled.leaseId, true)
      expect(yield* limiter.leases.heartbeat([pooled.leaseId, b.leaseId, c.leaseId])).toEqual({
        live: [b.leaseId, c.leaseId],
        reclaimed: [pooled.leaseId],
        nextDeadline: 2000
      })
    }).pipe(Effect.provide(backend)))

  it.effect("a lease held on a policy's old definition is renewed and released there after a reload", () =>
    Effect.gen(function*() {
      const before = pool("slots", "fixed", 1, 1)
      const after = pool("slots", "fixed", 2, 2)
      const reloadable = yield* MemoryBackend.makeReloadableStore({ policies: [before], leaseTtlMs: 2000 })
      const options = { cost: 1, hold: 0, value: 0 }
      const old = yield* reloadable.store.admitter(before).acquire("k", options)
      expect(old.held).toBe(true)
      const next = reloadable.reload(yield* PolicySet.from([after]))
      // The old lease does not count against the new definition's ceiling of 2.
      const fresh = yield* Effect.forEach([1, 2, 3], () => next.admitter(after).acquire("k", options))
      expect(fresh.map((a) => a.held)).toEqual([true, true, false])
      // Through the new generation, the old id still names its lease on the old definition.
      expect((yield* next.leases.heartbeat([old.leaseId])).live).toEqual([old.leaseId])
      yield* next.leases.release(old.leaseId, false)
      expect((yield* next.leases.heartbeat([old.leaseId, fresh[0]!.leaseId])).reclaimed).toEqual([old.leaseId])
      // Back on the old generation, its slot is free again.
      expect((yield* reloadable.store.admitter(before).acquire("k", options)).held).toBe(true)
    }))

  it.scoped("an adaptive ceiling contracts on dropped releases", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const admitOne = Effect.scoped(limiter.admit("adaptive", "k"))
      const first = yield* admitOne
      expect(first.decision.limit).toBe(8)
      yield* Effect.exit(Effect.scoped(Effect.zipRight(limiter.admit("adaptive", "k"), Effect.fail("overload"))))
      const after = yield* admitOne
      expect(after.decision.limit).toBe(4)
    }).pipe(Effect.provide(backend)))

  it.effect("a table full of live keys forgets none of them: a denied key stays denied, then goes fresh", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      for (const key of ["a", "b", "c"]) expect((yield* limiter.check("small", key)).allowed).toBe(true)
      expect((yield* limiter.check("small", "a")).allowed).toBe(false)
      // "d" finds the table of 3 full of keys still counting this window: it grows rather than forget "a".
      expect((yield* limiter.check("small", "d")).allowed).toBe(true)
      for (const key of ["a", "b", "c", "d"]) {
        expect(yield* limiter.check("small", key)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 60_000 })
      }
      // The next window: every key reads fresh again, whether or not the table still holds it.
      yield* TestClock.adjust(60_000)
      for (const key of ["a", "e", "f", "g"]) expect((yield* limiter.check("small", key)).remaining).toBe(0)
      expect((yield* limiter.check("small", "a")).allowed).toBe(false)
    }).pipe(Effect.provide(backend)))

  it.effect("a check reads the clock of the fiber that runs it, when fibers with other clocks alternate", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      // A fiber whose clock stands two windows ahead: "late" goes fresh there, not on the TestClock.
      const ahead = Clock.make()
      const later: Clock.Clock = {
        ...ahead,
        unsafeCurrentTimeMillis: () => 120_000,
        currentTimeMillis: Effect.succeed(120_000)
      }
      expect((yield* limiter.check("small", "late")).allowed).toBe(true)
      expect((yield* limiter.check("small", "late")).allowed).toBe(false)
      expect((yield* Effect.withClock(limiter.check("small", "late"), later)).allowed).toBe(true)
      // Back on the TestClock (time 0): the key holds the window of 120 s, another window than this one,
      // so it reads fresh here once; then this window's one unit is spent.
      expect((yield* limiter.check("small", "late")).allowed).toBe(true)
      expect(yield* limiter.check("small", "late")).toMatchObject({ allowed: false, retryAfterMs: 60_000 })
    }).pipe(Effect.provide(backend)))

  it.effect("a token budget's peek and forecast change nothing; debits then get what they said", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const rng = prng(18)
      // "read" is peeked and forecast before and after every debit; "twin" only debited: same decisions.
      let allowed = 0
      let denied = 0
      for (let i = 0; i < 400; i++) {
        yield* TestClock.adjust(rng.pick([0, 0, 1, 7, 99, 250, 999, 1000, 2500]))
        const tokens = rng.next() < 0.5 ? 1 : rng.int(1, 14)
        const peeked = yield* limiter.peek("llm", "read")
        const forecast = yield* limiter.forecast("llm", "read", tokens)
        expect({ ...(yield* limiter.peek("llm", "read")) }).toEqual({ ...peeked })
        expect({ ...(yield* limiter.forecast("llm", "read", tokens)) }).toEqual({ ...forecast })
        const debited = yield* limiter.debit("llm", "read", tokens)
        expect({ ...(yield* limiter.debit("llm", "twin", tokens)) }).toEqual({ ...debited })
        // The peek is the debit's decision at cost 0: same verdict, limit and reset; a refusal is the peek.
        expect([peeked.allowed, peeked.limit, peeked.resetAt]).toEqual([debited.allowed, 10, debited.resetAt])
        expect(peeked.allowed).toBe(peeked.remaining > 0)
        if (debited.allowed) {
          allowed++
          expect(peeked.retryAfterMs).toBe(0)
          expect(debited.remaining).toBe(Math.max(0, peeked.remaining - tokens))
        } else {
          denied++
          expect({ ...peeked }).toEqual({ ...debited })
        }
        expect(forecast.spendableNow > 0).toBe(debited.allowed)
        expect(forecast.spendableNow).toBe(Math.ceil(peeked.remaining / tokens))
        // A read after the debit reads what it left.
        const after = yield* limiter.peek("llm", "read")
        expect([after.remaining, after.resetAt]).toEqual([debited.remaining, debited.resetAt])
      }
      expect(allowed).toBeGreaterThan(50)
      expect(denied).toBeGreaterThan(50)
    }).pipe(Effect.provide(backend)))

  it.effect("a token budget's forecast counts the debits admitted now, and when the budget returns", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      yield* TestClock.adjust(5_250)
      // Untouched this window: full now.
      expect({ ...(yield* limiter.forecast("llm", "f", 4)) }).toEqual({
        spendableNow: 3,
        nextReplenishAt: 5_250,
        fullAt: 5_250
      })
      expect({ ...(yield* limiter.peek("llm", "f")) }).toEqual({
        allowed: true,
        limit: 10,
        remaining: 10,
        resetAt: 6_000,
        retryAfterMs: 0
      })
      for (let i = 0; i < 3; i++) expect((yield* limiter.debit("llm", "f", 4)).allowed).toBe(true)
      const refused = yield* limiter.debit("llm", "f", 4)
      expect(refused).toMatchObject({ allowed: false, remaining: 0, resetAt: 6_000, retryAfterMs: 750 })
      expect({ ...(yield* limiter.peek("llm", "f")) }).toEqual({ ...refused })
      expect({ ...(yield* limiter.forecast("llm", "f", 4)) }).toEqual({
        spendableNow: 0,
        nextReplenishAt: 6_000,
        fullAt: 6_000
      })
      // One ms before the window's end nothing has returned; at it, the whole budget has.
      yield* TestClock.adjust(749)
      expect((yield* limiter.peek("llm", "f")).allowed).toBe(false)
      yield* TestClock.adjust(1)
      expect({ ...(yield* limiter.forecast("llm", "f", 4)) }).toEqual({
        spendableNow: 3,
        nextReplenishAt: 6_000,
        fullAt: 6_000
      })
      expect(yield* limiter.peek("llm", "f")).toMatchObject({ allowed: true, remaining: 10, resetAt: 7_000 })
    }).pipe(Effect.provide(backend)))
})

describe("MemoryBackend.layerConfig", () => {
  it.effect("reads its options from Config, with the Local door; a missing value fails with ConfigError", () =>
    Effect.gen(function*() {
      const backend = MemoryBackend.layerConfig({
        policies: Config.succeed(policies),
        leaseTtlMs: Config.integer("LEASE_TTL_MS")
      })
      const { lease, local } = yield* Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const local = yield* MemoryBackend.Local
        return { lease: yield* limiter.leases.acquire("pool", "k"), local: local.check("small", "a") }
      }).pipe(Effect.provide(withConfig(backend, [["LEASE_TTL_MS", "5000"]])))
      expect([lease.held, lease.leaseExpiresAt]).toEqual([true, 5000])
      expect(local._tag).toBe("Right")

      const missing = yield* Effect.flip(Effect.scoped(Layer.build(withConfig(backend, []))))
      expect(ConfigError.isConfigError(missing)).toBe(true)
      expect(String(missing)).toContain("LEASE_TTL_MS")
    }))
})
