/**
 * Leased credits: local spends without a round trip, one refresh at a time however many fibers share
 * the credits, no credit spent twice, refusals remembered until their retry time, window coupling (credits
 * die at the boundary and never carry into a new window's grant), and bounded refreshing when grants
 * arrive already expired.
 *
 * Background refresh (`lowWater`): the check that crosses the mark does not wait, one refresh at a time
 * however many checks cross, a check the credits no longer cover waits for it, a failed refresh leaves the
 * credits spendable and the check that needs the store gets the typed error, a grant that lands after its
 * window ended is never spent in the next one, and closing the runner's scope interrupts a refresh.
 *
 * One reservation at a time, shared: the checks waiting for a reservation made in line get its failure
 * (one round trip for all), a check interrupted while it reserves lets the waiting ones reserve, and a
 * check interrupted while it waits spends nothing.
 * Through `reserveCallback` (no fiber): the same background behaviour, an answer reported at once, a
 * failed answer, and a refusal remembered by the asking check's clock.
 *
 * The budget here is a stand-in for the coordinator (the real ones are exercised in TwoTier*.test.ts): it
 * lets a reservation take TestClock time, be answered for the window it was asked in, fail on demand or
 * never answer, which no real store does on cue.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import type { Decision } from "../../src/Decision.js"
import { type RateLimiterError, ServiceUnavailable } from "../../src/Errors.js"
import * as LeasedCredits from "../../src/fleet/LeasedCredits.js"

/**
 * A budget of `limit` per window of `windowMs`, counting the reservations made and how many overlap.
 * `delayMs` makes each reservation take that long (TestClock time); `answeredAtStart` sizes the grant
 * when it is asked for (the answer then travels back), else when the delay is over. `down` makes the
 * reservations that end while it is set fail with `ServiceUnavailable`.
 */
const budget = (
  limit: number,
  windowMs: number,
  options: { readonly delayMs?: number; readonly answeredAtStart?: boolean } = {}
) => {
  const stats = { calls: 0, inFlight: 0, maxInFlight: 0, granted: 0, interrupted: 0 }
  const control = { down: false }
  let window = -1
  let left = limit
  const grant = (wants: number, now: number) => {
    const current = Math.floor(now / windowMs)
    if (current !== window) {
      window = current
      left = limit
    }
    const granted = Math.min(wants, left)
    left -= granted
    stats.granted += granted
    const expiresAt = (current + 1) * windowMs
    return { granted, expiresAt, retryAfterMs: granted === 0 ? expiresAt - now : 0, limit }
  }
  const reserve = (wants: number) =>
    Effect.gen(function*() {
      stats.calls++
      stats.inFlight++
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
      const early = options.answeredAtStart === true ? grant(wants, yield* TestClock.currentTimeMillis) : undefined
      if (options.delayMs !== undefined) yield* Effect.sleep(options.delayMs)
      else yield* Effect.yieldNow()
      if (control.down) return yield* Effect.fail(new ServiceUnavailable({ service: "budget", reason: "down" }))
      return early ?? grant(wants, yield* TestClock.currentTimeMillis)
    }).pipe(
      Effect.onInterrupt(() => Effect.sync(() => stats.interrupted++)),
      Effect.ensuring(Effect.sync(() => stats.inFlight--))
    )
  return { reserve, stats, control }
}

/** Runs `effect` while TestClock moves `ms` forward (for reservations that take time). */
const across = <A, E>(ms: number, effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust(ms)
    return yield* Fiber.join(fiber)
  })

/** Lets other fibers run until `done` holds (at most 100 yields; the assertions after it tell). */
const settle = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100 && !done(); i++) yield* Effect.yieldNow()
  })

/** Runs `times` checks one after another. */
const spend = (credits: LeasedCredits.LeasedCredits, times: number) =>
  Effect.forEach(Array.from({ length: times }), () => credits.check())

const allowed = (decisions: ReadonlyArray<Decision>) => decisions.filter((d) => d.allowed).length

/** Window-coupled credits that refresh in the background, their fibers in the test's scope. */
const backgroundCredits = (options: {
  readonly limit: number
  readonly batch: number
  readonly lowWater: number
  readonly reserve: LeasedCredits.LeasedCreditsOptions["reserve"]
}) =>
  Effect.flatMap(
    LeasedCredits.makeBackground,
    (background) => LeasedCredits.make({ ...options, background, windowCoupled: true, name: "t" })
  )

describe("LeasedCredits", () => {
  it.effect("spends locally and reserves only when the credits run short", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(10)
      const { reserve, stats } = budget(100, 1000)
      const credits = yield* LeasedCredits.make({ limit: 100, batch: 10, windowCoupled: true, reserve, name: "t" })
      const first = yield* credits.check()
      expect(first).toMatchObject({ allowed: true, limit: 100, remaining: 9, resetAt: 1000, retryAfterMs: 0 })
      for (let i = 0; i < 9; i++) yield* credits.check()
      expect(stats.calls).toBe(1)
      expect(credits.credits).toBe(0)
      yield* credits.check(3)
      expect(stats.calls).toBe(2)
      expect(credits.credits).toBe(7)
      // A check costing more than a batch asks for what it needs.
      yield* credits.check(20)
      expect(stats.calls).toBe(3)
      expect(credits.credits).toBe(0)
    }))

  it.effect("many fibers sharing the credits: one refresh at a time, nothing spent twice", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const { reserve, stats } = budget(1000, 10_000, { delayMs: 5 })
      const credits = yield* LeasedCredits.make({ limit: 1000, batch: 7, windowCoupled: true, reserve, name: "t" })
      const fiber = yield* Effect.fork(
        Effect.all(Array.from({ length: 300 }, () => credits.check()), { concurrency: "unbounded" })
      )
      for (let i = 0; i < 100 && fiber.unsafePoll() === null; i++) yield* TestClock.adjust(5)
      const decisions = yield* Fiber.join(fiber)
      expect(allowed(decisions)).toBe(300)
      expect(stats.maxInFlight).toBe(1)
      // Every unit admitted was granted once, and fibers queued behind a refresh used its grant first.
      expect(stats.granted).toBe(300 + credits.credits)
      expect(stats.calls).toBe(Math.ceil(300 / 7))
    }))

  it.effect("an exhausted budget is a denial from the store, remembered until its retry time", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(100)
      const { reserve, stats } = budget(5, 1000)
      const credits = yield* LeasedCredits.make({ limit: 5, batch: 3, windowCoupled: true, reserve, name: "t" })
      const decisions: Array<Decision> = []
      for (let i = 0; i < 8; i++) decisions.push(yield* credits.check())
      expect(allowed(decisions)).toBe(5)
      expect(decisions[5]).toMatchObject({ allowed: false, limit: 5, remaining: 0, resetAt: 1000, retryAfterMs: 900 })
      // Three grants (3, 2, then the refusal); the later denials were answered locally.
      expect(stats.calls).toBe(3)
      yield* TestClock.adjust(400)
      expect(yield* credits.check()).toMatchObject({ allowed: false, retryAfterMs: 500 })
      expect(stats.calls).toBe(3)
      yield* TestClock.adjust(500)
      expect((yield* credits.check()).allowed).toBe(true)
      expect(stats.calls).toBe(4)
    }))

  it.effect("window-coupled credits die at the boundary; uncoupled ones carry over", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(900)
      const coupled = budget(10, 1000)
      const a = yield* LeasedCredits.make({
        limit: 10,
        batch: 4,
        windowCoupled: true,
        reserve: coupled.reserve,
        name: "a"
      })
      yield* a.check()
      const carried = budget(10, 1000)
      const b = yield* LeasedCredits.make({
        limit: 10,
        batch: 4,
        windowCoupled: false,
        reserve: carried.reserve,
        name: "b"
      })
      yield* b.check()
      yield* TestClock.setTime(1000)
      expect(yield* a.check()).toMatchObject({ allowed: true, remaining: 3, resetAt: 2000 })
      expect(coupled.stats.calls).toBe(2)
      expect(yield* b.check()).toMatchObject({ allowed: true, remaining: 2, resetAt: 1000 })
      expect(carried.stats.calls).toBe(1)
    }))

  it.effect("a grant for a newer window than the credits held starts from zero when coupled", () =>
    Effect.gen(function*() {
      // The store's window has moved on while this process's clock still reads the old window.
      yield* TestClock.setTime(500)
      let next = { granted: 2, expiresAt: 1000 }
      const credits = yield* LeasedCredits.make({
        limit: 10,
        batch: 2,
        windowCoupled: true,
        name: "t",
        reserve: () => Effect.succeed({ ...next, retryAfterMs: 0 })
      })
      yield* credits.check() // 1 credit of window 1000 left
      next = { granted: 2, expiresAt: 2000 }
      yield* credits.check(2) // needs 2: the grant for window 2000 replaces the leftover
      expect(credits.credits).toBe(0)
      expect(credits.expiresAt).toBe(2000)
    }))

  it.effect("refuses a bad cost and gives up on grants that are dead on arrival", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(5000)
      let calls = 0
      const credits = yield* LeasedCredits.make({
        limit: 10,
        batch: 2,
        windowCoupled: true,
        name: "policy \"p\"",
        reserve: () => Effect.sync(() => ({ granted: 2, expiresAt: 4000 + calls++, retryAfterMs: 0 }))
      })
      for (const cost of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect((yield* Effect.flip(credits.check(cost)))._tag).toBe("InvalidArgument")
      }
      expect(calls).toBe(0)
      const error = yield* Effect.flip(credits.check())
      expect(error._tag).toBe("ServiceUnavailable")
      expect(error.message).toContain("clock")
      expect(calls).toBe(4)
    }))

  describe("lowWater: background refresh", () => {
    it.scoped("the check that crosses the mark returns at once; a check at 0 waits for that refresh", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
        const background = yield* LeasedCredits.makeBackground
        const credits = yield* LeasedCredits.make({
          limit: 1000,
          batch: 10,
          lowWater: 4,
          background,
          windowCoupled: true,
          reserve,
          name: "t"
        })
        // The first check has nothing to spend: it waits for its reservation.
        expect((yield* across(100, credits.check())).remaining).toBe(9)
        yield* spend(credits, 4)
        expect(stats.calls).toBe(1)
        expect(credits.refreshing).toBe(false)
        // This check leaves 4 credits: it starts one refresh and returns without the clock moving.
        expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 4 })
        expect(stats.calls).toBe(2)
        expect(stats.inFlight).toBe(1)
        expect(credits.refreshing).toBe(true)
        // The rest is spent meanwhile, without a second reservation.
        expect((yield* spend(credits, 4)).map((d) => d.remaining)).toEqual([3, 2, 1, 0])
        expect(stats.calls).toBe(2)
        // At 0 a check waits for the refresh in flight.
        const waiting = yield* Effect.fork(credits.check())
        yield* Effect.yieldNow()
        expect(waiting.unsafePoll()).toBeNull()
        yield* TestClock.adjust(100)
        expect(yield* Fiber.join(waiting)).toMatchObject({ allowed: true, remaining: 9 })
        expect(stats.calls).toBe(2)
        expect(stats.maxInFlight).toBe(1)
        expect(credits.refreshing).toBe(false)
      }))

    it.scoped("many concurrent checks crossing the mark start one refresh", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
        const credits = yield* backgroundCredits({ limit: 1000, batch: 20, lowWater: 10, reserve })
        yield* across(100, credits.check())
        expect(credits.credits).toBe(19)
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 30 }, () => credits.check()), { concurrency: "unbounded" })
        )
        yield* settle(() => credits.credits === 0 && stats.calls === 2)
        // 19 spent locally (the 9th crossed the mark), 11 wait for the one refresh in flight.
        expect(stats.calls).toBe(2)
        expect(stats.inFlight).toBe(1)
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust(100)
        const decisions = yield* Fiber.join(fiber)
        expect(allowed(decisions)).toBe(30)
        expect(stats.maxInFlight).toBe(1)
        // The 11 waiters spent from the grant of 20; the next local spend below the mark refreshes again.
        expect(stats.granted).toBe(40)
        expect(credits.credits).toBe(9)
        expect(stats.calls).toBe(2)
        yield* credits.check()
        expect(stats.calls).toBe(3)
      }))

    it.scoped("a failed refresh keeps the credits; the check that needs the store gets the typed error", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { control, reserve, stats } = budget(1000, 60_000)
        const credits = yield* backgroundCredits({ limit: 1000, batch: 10, lowWater: 5, reserve })
        yield* spend(credits, 4)
        expect(stats.calls).toBe(1)
        control.down = true
        // Crossing the mark: the refresh is forked and fails; this check is still answered locally.
        expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 5 })
        yield* settle(() => !credits.refreshing)
        expect(stats.calls).toBe(2)
        expect(credits.refreshing).toBe(false)
        // The remaining credits are spent with no further background attempt.
        expect(allowed(yield* spend(credits, 5))).toBe(5)
        expect(stats.calls).toBe(2)
        // The next check needs the store: it reserves in line and gets the store's error.
        const error = yield* Effect.flip(credits.check())
        expect(error).toBeInstanceOf(ServiceUnavailable)
        expect(stats.calls).toBe(3)
        // The store is back: in line again, then background refresh resumes at the mark.
        control.down = false
        expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 9 })
        yield* spend(credits, 4)
        expect(stats.calls).toBe(5)
      }))

    it.scoped("a check waiting on a refresh that fails gets its typed error", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { control, reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
        const credits = yield* backgroundCredits({ limit: 1000, batch: 4, lowWater: 1, reserve })
        yield* across(100, credits.check())
        yield* spend(credits, 2) // 1 left: a refresh is in flight
        expect(credits.refreshing).toBe(true)
        yield* credits.check()
        const waiting = yield* Effect.fork(credits.check())
        control.down = true
        yield* TestClock.adjust(100)
        const exit = yield* Fiber.await(waiting)
        expect(exit).toStrictEqual(Exit.fail(new ServiceUnavailable({ service: "budget", reason: "down" })))
        expect(stats.calls).toBe(2)
      }))

    it.scoped("a refused refresh leaves the credits spendable; the refusal is answered locally after", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(200)
        const { reserve, stats } = budget(6, 1000)
        const credits = yield* backgroundCredits({ limit: 6, batch: 4, lowWater: 2, reserve })
        // 4 granted, then a background refresh at 2 left gets the last 2, and one at 2 left is refused.
        const decisions = yield* spend(credits, 9)
        expect(allowed(decisions)).toBe(6)
        expect(decisions[6]).toMatchObject({ allowed: false, remaining: 0, resetAt: 1000, retryAfterMs: 800 })
        expect(stats.calls).toBe(3)
        // No refresh while the refusal stands; the next window leases again.
        yield* TestClock.setTime(1000)
        expect(yield* credits.check()).toMatchObject({ allowed: true, resetAt: 2000 })
        expect(stats.calls).toBe(4)
      }))

    it.scoped("window-coupled: a grant that lands after its window ended is never spent in the next", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(800)
        // Each grant is sized for the window in which it was asked, and arrives 100 ms later.
        const { reserve, stats } = budget(100, 1000, { delayMs: 100, answeredAtStart: true })
        const credits = yield* backgroundCredits({ limit: 100, batch: 10, lowWater: 5, reserve })
        expect(yield* across(100, credits.check())).toMatchObject({ allowed: true, remaining: 9, resetAt: 1000 })
        yield* TestClock.setTime(950)
        yield* spend(credits, 4) // 5 left: a refresh for the window ending at 1000 is asked at 950
        expect(credits.refreshing).toBe(true)
        yield* TestClock.setTime(1050) // it lands after the boundary
        expect(credits.refreshing).toBe(false)
        expect(credits.expiresAt).toBe(1000)
        // None of the window's credits is spent now: the check leases for the new window.
        const decision = yield* across(100, credits.check())
        expect(decision).toMatchObject({ allowed: true, remaining: 9, resetAt: 2000 })
        expect(stats.calls).toBe(3)
      }))

    it.scoped("window-coupled: a grant for the next window replaces the leftovers of the old one", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(850)
        // Grants are sized when the 100 ms trip reaches the store.
        const { reserve } = budget(100, 1000, { delayMs: 100 })
        const credits = yield* backgroundCredits({ limit: 100, batch: 10, lowWater: 5, reserve })
        yield* across(100, credits.check()) // granted at 950 for the window ending at 1000
        yield* spend(credits, 4) // a refresh asked at 950 reaches the store at 1050
        yield* TestClock.setTime(1050)
        expect(credits.expiresAt).toBe(2000)
        expect(credits.credits).toBe(10)
        expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 9, resetAt: 2000 })
      }))

    it.effect("closing the runner's scope interrupts a refresh in flight; a waiting check gets a typed error", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
        const scope = yield* Scope.make()
        const credits = yield* LeasedCredits.make({
          limit: 1000,
          batch: 4,
          lowWater: 2,
          background: yield* Scope.extend(LeasedCredits.makeBackground, scope),
          windowCoupled: true,
          reserve,
          name: "t"
        })
        yield* across(100, credits.check())
        yield* spend(credits, 3)
        expect(credits.refreshing).toBe(true)
        const waiting = yield* Effect.fork(credits.check())
        yield* Effect.yieldNow()
        yield* Scope.close(scope, Exit.void)
        expect(stats.interrupted).toBe(1)
        expect(stats.inFlight).toBe(0)
        expect(credits.refreshing).toBe(false)
        const error = yield* Effect.flip(Fiber.join(waiting))
        expect(error).toBeInstanceOf(ServiceUnavailable)
        expect(error.message).toContain("interrupted")
        // After the close, checks still work, refreshing in line.
        expect((yield* across(100, credits.check())).allowed).toBe(true)
        yield* spend(credits, 2)
        expect(credits.refreshing).toBe(false)
      }))

    it.scoped("lowWater 0 with a runner reserves only when the credits run out", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(0)
        const { reserve, stats } = budget(1000, 60_000)
        const credits = yield* backgroundCredits({ limit: 1000, batch: 5, lowWater: 0, reserve })
        yield* spend(credits, 5)
        expect(stats.calls).toBe(1)
        expect(credits.credits).toBe(0)
        yield* credits.check()
        expect(stats.calls).toBe(2)
      }))
  })
})

describe("LeasedCredits: one reservation at a time, shared", () => {
  it.effect("checks waiting on a reservation made in line get its failure; one round trip for all", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const { control, reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
      const credits = yield* LeasedCredits.make({ limit: 1000, batch: 5, windowCoupled: true, reserve, name: "t" })
      control.down = true
      const fiber = yield* Effect.fork(
        Effect.all(Array.from({ length: 10 }, () => Effect.either(credits.check())), { concurrency: "unbounded" })
      )
      yield* TestClock.adjust(100)
      const results = yield* Fiber.join(fiber)
      expect(results.every((r) => r._tag === "Left" && r.left instanceof ServiceUnavailable)).toBe(true)
      expect(stats.calls).toBe(1)
      expect(credits.refreshing).toBe(false)
      control.down = false
      expect(yield* across(100, credits.check())).toMatchObject({ allowed: true, remaining: 4 })
      expect(stats.calls).toBe(2)
    }))

  it.effect("a check interrupted while it reserves in line lets the checks waiting for it reserve", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const { reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
      const credits = yield* LeasedCredits.make({ limit: 1000, batch: 5, windowCoupled: true, reserve, name: "t" })
      const first = yield* Effect.fork(credits.check())
      yield* settle(() => stats.inFlight === 1)
      const second = yield* Effect.fork(credits.check())
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(first)
      expect(stats.interrupted).toBe(1)
      yield* settle(() => stats.calls === 2)
      expect(stats.calls).toBe(2)
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(second)).toMatchObject({ allowed: true, remaining: 4 })
      expect(stats.maxInFlight).toBe(1)
    }))
})

/**
 * A store answering through a callback, as `reserveCallback` wants it: each call is held until the test
 * answers it (`answer` the oldest with a grant sized now, `fail` it), or answered at once with `immediate`.
 */
const callbackStore = (limit: number, windowMs: number) => {
  const calls: Array<{
    readonly wants: number
    readonly done: (exit: Exit.Exit<LeasedCredits.LeaseGrant, RateLimiterError>) => void
  }> = []
  const stats = { callbacks: 0, effects: 0 }
  const control = { immediate: false }
  let window = -1
  let left = limit
  const grant = (wants: number, now: number): LeasedCredits.LeaseGrant => {
    const current = Math.floor(now / windowMs)
    if (current !== window) {
      window = current
      left = limit
    }
    const granted = Math.min(wants, left)
    left -= granted
    const expiresAt = (current + 1) * windowMs
    return { granted, expiresAt, retryAfterMs: granted === 0 ? expiresAt - now : 0 }
  }
  const reserve = (wants: number) =>
    Effect.map(TestClock.currentTimeMillis, (now) => {
      stats.effects++
      return grant(wants, now)
    })
  const reserveCallback: NonNullable<LeasedCredits.LeasedCreditsOptions["reserveCallback"]> = (wants, clock, done) => {
    stats.callbacks++
    if (control.immediate) done(Exit.succeed(grant(wants, clock.unsafeCurrentTimeMillis())))
    else calls.push({ wants, done })
  }
  const answer = Effect.map(TestClock.currentTimeMillis, (now) => {
    const call = calls.shift()
    call?.done(Exit.succeed(grant(call.wants, now)))
  })
  const fail = (error: RateLimiterError) =>
    Effect.sync(() => {
      calls.shift()?.done(Exit.fail(error))
    })
  return { reserve, reserveCallback, answer, fail, stats, control, calls }
}

const callbackCredits = (store: ReturnType<typeof callbackStore>, options: {
  readonly limit: number
  readonly batch: number
  readonly lowWater: number
}) =>
  Effect.flatMap(LeasedCredits.makeBackground, (background) =>
    LeasedCredits.make({
      ...options,
      background,
      windowCoupled: true,
      name: "t",
      reserve: store.reserve,
      reserveCallback: store.reserveCallback
    }))

describe("LeasedCredits: background refresh through reserveCallback", () => {
  it.scoped("refreshes without an Effect; the crossing check returns, a check at 0 waits for the answer", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const store = callbackStore(1000, 60_000)
      const credits = yield* callbackCredits(store, { limit: 1000, batch: 10, lowWater: 4 })
      // The first check has nothing: it reserves in line (the Effect).
      expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 9 })
      expect(store.stats).toEqual({ callbacks: 0, effects: 1 })
      yield* spend(credits, 4)
      expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 4 })
      expect(store.stats).toEqual({ callbacks: 1, effects: 1 })
      expect(credits.refreshing).toBe(true)
      expect((yield* spend(credits, 4)).map((d) => d.remaining)).toEqual([3, 2, 1, 0])
      const waiting = yield* Effect.fork(credits.check())
      yield* Effect.yieldNow()
      expect(waiting.unsafePoll()).toBeNull()
      yield* store.answer
      expect(yield* Fiber.join(waiting)).toMatchObject({ allowed: true, remaining: 9 })
      expect(credits.refreshing).toBe(false)
      expect(store.stats).toEqual({ callbacks: 1, effects: 1 })
    }))

  it.scoped("an answer reported at once is adopted at once", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const store = callbackStore(1000, 60_000)
      store.control.immediate = true
      const credits = yield* callbackCredits(store, { limit: 1000, batch: 10, lowWater: 4 })
      yield* spend(credits, 6)
      expect(credits.refreshing).toBe(false)
      expect(credits.credits).toBe(14)
      expect(store.stats).toEqual({ callbacks: 1, effects: 1 })
    }))

  it.scoped("a failed answer: the waiting check gets the typed error, background refresh stops until one succeeds", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const store = callbackStore(1000, 60_000)
      const credits = yield* callbackCredits(store, { limit: 1000, batch: 4, lowWater: 1 })
      yield* spend(credits, 3) // 1 left: a callback refresh is out
      expect(store.stats.callbacks).toBe(1)
      yield* credits.check()
      const waiting = yield* Effect.fork(credits.check())
      yield* Effect.yieldNow()
      const down = new ServiceUnavailable({ service: "budget", reason: "down" })
      yield* store.fail(down)
      expect(yield* Fiber.await(waiting)).toStrictEqual(Exit.fail(down))
      // No background refresh now: the next check reserves in line, then the mark starts callbacks again.
      expect(yield* credits.check()).toMatchObject({ allowed: true, remaining: 3 })
      expect(store.stats).toEqual({ callbacks: 1, effects: 2 })
      yield* spend(credits, 2)
      expect(store.stats).toEqual({ callbacks: 2, effects: 2 })
    }))

  it.scoped("a refused answer is remembered until its retry time by the clock of the check that asked", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(200)
      const store = callbackStore(6, 1000)
      const credits = yield* callbackCredits(store, { limit: 6, batch: 4, lowWater: 2 })
      yield* spend(credits, 2) // 2 left: a refresh is out
      yield* store.answer // the last 2 units of the window
      yield* spend(credits, 2) // 2 left again: another refresh is out
      yield* store.answer // refused: retry at the window's end (1000)
      expect(credits.refreshing).toBe(false)
      expect(allowed(yield* spend(credits, 2))).toBe(2)
      yield* TestClock.setTime(400)
      expect(yield* credits.check()).toMatchObject({ allowed: false, resetAt: 1000, retryAfterMs: 600 })
      expect(store.stats).toEqual({ callbacks: 2, effects: 1 })
    }))
})

describe("LeasedCredits: an interrupted wait", () => {
  it.scoped("a check interrupted while it waits for a refresh spends nothing; the others get the grant", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const { reserve, stats } = budget(1000, 60_000, { delayMs: 100 })
      const credits = yield* backgroundCredits({ limit: 1000, batch: 4, lowWater: 1, reserve })
      yield* across(100, credits.check())
      yield* spend(credits, 3) // 0 left, the refresh started at 1 left is in flight
      expect(credits.refreshing).toBe(true)
      const interrupted = yield* Effect.fork(credits.check())
      const waiting = yield* Effect.fork(credits.check())
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(interrupted)
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(waiting)).toMatchObject({ allowed: true, remaining: 3 })
      expect(credits.credits).toBe(3)
      expect(stats.calls).toBe(2)
    }))
})
