/**
 * The in-process waiting lines behind the front's waiting calls (`checkWithin`, `debitWithin`, `admit`
 * with `wait`): one line per (policy, key), first come first served.
 *
 * - A waiting call joins the line of its (policy, key). The first in line (the head) tries at once; the
 *   others wait for their turn without trying (no barging), so a freed slot or a replenished token goes to
 *   the longest waiter.
 * - A denied head sleeps, then tries again. On the rate and cost axes the decision says when a retry can
 *   succeed (`retryAfterMs`, plus jitter on a remote door, where other processes wait too); when that is
 *   past the deadline, the head gives up at once. On the concurrency axis a denial cannot tell when a slot
 *   frees: the head sleeps until a slot of its policy is released in this process (the front's admission
 *   keeper signals every release; it wakes the head of that key's line, else of the policy's oldest line) or, for a slot freed elsewhere, a fallback delay elapses: on a
 *   remote door a bounded backoff with jitter (other processes hold slots), on an in-process door the
 *   lease TTL (only a lapsed lease, or a lease served to another process by our server, frees a slot
 *   without this front's keeper). Either way one waiter wakes, never all, and nothing busy-loops.
 * - A head that is let through, gives up, fails or is interrupted passes the turn to the next in line,
 *   which tries at once. A waiter whose deadline passes before its turn answers with the last denial seen
 *   on the line (the head's). An error other than a denial ends the wait with that error.
 *
 * Only waiting calls create lines: a call without `wait` never touches this module, and a release looks
 * for a line only while one exists.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"

/**
 * How a line reads the outcome of one try.
 *
 * @since 0.3.0
 */
export interface Reading<A> {
  /** The try was let through (a decision allowed, an admission held). */
  readonly allowed: (outcome: A) => boolean
  /**
   * For a denial: in how many ms a retry can succeed, or undefined when the denial cannot tell (a
   * concurrency denial: only a released slot frees room).
   */
  readonly retryAfterMs: (outcome: A) => number | undefined
}

/** The first backoff step after a concurrency denial that names no wait of its own, in ms. */
const BACKOFF_BASE_MS = 20
/** The longest backoff step: a slot freed in another process is seen at most this late. */
const BACKOFF_CAP_MS = 1000

/**
 * The delay before the `attempt`-th retry (0-based) after concurrency denials: doubling from
 * `max(hint, BACKOFF_BASE_MS)` up to `BACKOFF_CAP_MS`.
 *
 * @since 0.3.0
 */
export const backoffMs = (hintMs: number, attempt: number): number =>
  Math.min(BACKOFF_CAP_MS, Math.max(hintMs, BACKOFF_BASE_MS) * 2 ** Math.min(attempt, 16))

/** The live `Clock` (a fiber's own unless a test replaced it). */
const liveClock = Context.get(DefaultServices.liveServices, Clock.Clock)
/** The longest delay a Node timer takes (the live `Clock` never wakes a longer sleep either). */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Waits for the signal `listen` arms (true) or for `ms` (false), whichever comes first; `listen` answers
 * "now" when the signal already came, else how to disarm it. A signalled waiter resumes at once, never
 * after a timer's teardown (racing a sleep with `Effect.timeout` made every hand-over in a line wait for
 * that). No timer at all for an endless wait.
 *
 * On the live `Clock` the timer is a Node timer cleared by whichever comes first: the live `Clock` sleeps
 * on the same timers, and a forked sleep costs tens of µs per wait (two waits per admission in a busy
 * line). On any other `Clock` (`TestClock`) it is a daemon sleep on that `Clock`, interrupted without
 * being awaited, so the test's clock drives it.
 */
const signalOrTimeout = (ms: number, listen: (signal: () => void) => "now" | (() => void)): Effect.Effect<boolean> =>
  ms === Number.POSITIVE_INFINITY
    ? waitFor(listen, undefined)
    : Effect.clockWith((clock) =>
      clock === liveClock && ms <= MAX_TIMER_MS
        ? waitOnTimer(ms, listen)
        : Effect.flatMap(Effect.forkDaemon(Effect.sleep(Duration.millis(ms))), (timer) => waitFor(listen, timer))
    )

/** `signalOrTimeout` on a Node timer of `ms`. */
const waitOnTimer = (ms: number, listen: (signal: () => void) => "now" | (() => void)): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    let settled = false
    // Runs only after `listen` has answered and the timer is set (a signal comes later).
    const settle = (signalled: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      disarm()
      resume(Effect.succeed(signalled))
    }
    const armed = listen(() => settle(true))
    if (armed === "now") return resume(Effect.succeed(true))
    const disarm = armed
    const timer = setTimeout(() => settle(false), ms)
    return Effect.sync(() => {
      settled = true
      clearTimeout(timer)
      disarm()
    })
  })

/** `signalOrTimeout` on `timer`'s end (a forked sleep), or on the signal alone when there is no timer. */
const waitFor = (
  listen: (signal: () => void) => "now" | (() => void),
  timer: Fiber.RuntimeFiber<void> | undefined
): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    let settled = false
    // Called only after `listen` has answered (a signal comes later, a timer's observer is added later).
    const settle = (signalled: boolean) => {
      if (settled) return
      settled = true
      if (armed !== "now") armed()
      resume(timer === undefined ? Effect.succeed(signalled) : Effect.as(Fiber.interruptFork(timer), signalled))
    }
    const armed = listen(() => settle(true))
    if (armed === "now") return settle(true)
    timer?.addObserver(() => settle(false))
    return Effect.suspend(() => {
      settled = true
      armed()
      return timer === undefined ? Effect.void : Fiber.interruptFork(timer)
    })
  })

/**
 * One waiting call. `resume` is set while it waits for its turn; `granted` once the turn is its (possibly
 * before it started listening); `gone` once it stopped waiting (out of time or interrupted).
 */
class Waiter {
  resume: (() => void) | undefined
  granted: boolean
  gone: boolean
  constructor() {
    this.resume = undefined
    this.granted = false
    this.gone = false
  }
}

/** The line of one (policy, key). */
class Line<A> {
  head: Waiter | undefined
  readonly queue: Array<Waiter>
  /** Wakes the head while it sleeps on a concurrency denial. */
  wake: (() => void) | undefined
  /** A slot was released since the head's last try. */
  released: boolean
  /** The last denial seen on this line. */
  last: A | undefined
  constructor() {
    this.head = undefined
    this.queue = []
    this.wake = undefined
    this.released = false
    this.last = undefined
  }
}

/**
 * The lines of one operation (check, debit or admit) of one front.
 *
 * @since 0.3.0
 */
export interface WaitLines<A, E> {
  /**
   * Tries `attempt` in the line of (policy, key) until it is let through or `waitMs` (may be `Infinity`)
   * has passed; answers the outcome that was let through, or the last denial.
   */
  readonly wait: (policy: string, key: string, attempt: Effect.Effect<A, E>, waitMs: number) => Effect.Effect<A, E>
  /** True while any line exists (a release needs to signal only then). */
  readonly waiting: () => boolean
  /**
   * A slot of (policy, key) was released in this process: wakes one head sleeping on a concurrency denial
   * of that policy (the key's own first, since the concurrency axis is the policy's).
   */
  readonly released: (policy: string, key: string) => void
}

/**
 * Where a line's limits live.
 *
 * @since 0.3.0
 */
export interface WaitLinesOptions {
  /** Other processes share the limits (Redis, a server): retries are jittered, slots freed elsewhere polled. */
  readonly remote: boolean
  /** The lease TTL: on an in-process door, the fallback delay after a concurrency denial. */
  readonly ttlMs: number
}

/**
 * Builds the lines of one operation.
 *
 * @since 0.3.0
 */
export const makeWaitLines = <A, E>(reading: Reading<A>, options: WaitLinesOptions): WaitLines<A, E> => {
  const { remote, ttlMs } = options
  const lines = new Map<string, Map<string, Line<A>>>()

  const lineOf = (policy: string, key: string): Line<A> => {
    let byKey = lines.get(policy)
    if (byKey === undefined) {
      byKey = new Map()
      lines.set(policy, byKey)
    }
    let line = byKey.get(key)
    if (line === undefined) {
      line = new Line<A>()
      byKey.set(key, line)
    }
    return line
  }

  const drop = (policy: string, key: string, line: Line<A>): void => {
    const byKey = lines.get(policy)
    if (byKey === undefined || byKey.get(key) !== line) return
    byKey.delete(key)
    if (byKey.size === 0) lines.delete(policy)
  }

  /** Gives the turn to the next waiter still waiting, or drops the empty line. */
  const passTurn = (policy: string, key: string, line: Line<A>): void => {
    line.head = undefined
    line.wake = undefined
    let next = line.queue.shift()
    while (next !== undefined && next.gone) next = line.queue.shift()
    if (next === undefined) return drop(policy, key, line)
    line.head = next
    next.granted = true
    const resume = next.resume
    next.resume = undefined
    // A waiter not yet listening finds its turn granted when it starts to.
    if (resume !== undefined) resume()
  }

  /** Leaves the line however the call ended: the head passes the turn, a waiter gives up its place. */
  const leave = (policy: string, key: string, line: Line<A>, waiter: Waiter): Effect.Effect<void> =>
    Effect.sync(() => {
      if (line.head === waiter) return passTurn(policy, key, line)
      waiter.resume = undefined
      const at = line.queue.indexOf(waiter)
      if (at >= 0) line.queue.splice(at, 1)
    })

  /** Resumes when the waiter gets its turn (true) or after `ms` (false); a wait that stops gives up its place. */
  const turnOf = (waiter: Waiter, ms: number): Effect.Effect<boolean> =>
    signalOrTimeout(ms, (signal) => {
      if (waiter.granted) return "now"
      waiter.resume = signal
      return () => {
        waiter.resume = undefined
        if (!waiter.granted) waiter.gone = true
      }
    })

  /** Sleeps `ms`, or less when a slot of the line is released meanwhile (or was, since the last try). */
  const sleepOrWake = (line: Line<A>, ms: number): Effect.Effect<boolean> =>
    signalOrTimeout(ms, (signal) => {
      if (line.released) return "now"
      const wake = () => signal()
      line.wake = wake
      return () => {
        if (line.wake === wake) line.wake = undefined
      }
    })

  /** Adds up to a quarter of `ms` (at least 1 ms) on a remote door, so processes do not retry in step. */
  const jittered = (ms: number): Effect.Effect<number> =>
    remote
      ? Effect.map(Random.nextIntBetween(0, Math.max(2, Math.floor(ms / 4) + 1)), (extra) => ms + extra)
      : Effect.succeed(ms)

  /** The head's loop: try, and on a denial sleep as the denial says, until let through or out of time. */
  const asHead = (line: Line<A>, attempt: Effect.Effect<A, E>, deadline: number): Effect.Effect<A, E> =>
    Effect.gen(function*() {
      let concurrencyDenials = 0
      while (true) {
        line.released = false
        const outcome = yield* attempt
        if (reading.allowed(outcome)) return outcome
        line.last = outcome
        const left = deadline - (yield* Clock.currentTimeMillis)
        if (left <= 0) return outcome
        const retryAfter = reading.retryAfterMs(outcome)
        if (retryAfter !== undefined && retryAfter > 0) {
          // The rate or cost axis: nothing frees room before `retryAfter`.
          if (retryAfter > left) return outcome
          concurrencyDenials = 0
          const delay = yield* jittered(retryAfter)
          yield* Effect.interruptible(Effect.sleep(Duration.millis(Math.min(delay, left))))
        } else if (!line.released) {
          const delay = remote ? yield* jittered(backoffMs(retryAfter ?? 0, concurrencyDenials++)) : ttlMs
          yield* Effect.interruptible(sleepOrWake(line, Math.min(delay, left)))
        }
      }
    })

  const wait: WaitLines<A, E>["wait"] = (policy, key, attempt, waitMs) =>
    Effect.flatMap(Clock.currentTimeMillis, (start) => {
      const deadline = start + waitMs
      const line = lineOf(policy, key)
      const waiter = new Waiter()
      if (line.head === undefined) {
        line.head = waiter
        return Effect.ensuring(asHead(line, attempt, deadline), leave(policy, key, line, waiter))
      }
      line.queue.push(waiter)
      const queued = Effect.flatMap(
        Effect.interruptible(turnOf(waiter, waitMs)),
        (turn): Effect.Effect<A, E> =>
          turn || line.head === waiter
            ? asHead(line, attempt, deadline)
            // Out of time before its turn: the line's last denial (one try of its own if none was seen yet).
            : line.last !== undefined
            ? Effect.succeed(line.last)
            : attempt
      )
      return Effect.ensuring(queued, leave(policy, key, line, waiter))
    })

  // The concurrency axis is the policy's, not the key's: a slot released on any key of the policy may
  // serve any of its lines. One head wakes: the key's own, else the oldest line's (a Map iterates in
  // insertion order). When no head sleeps, every head of the policy retries at once after its next denial.
  const released: WaitLines<A, E>["released"] = (policy, key) => {
    const byKey = lines.get(policy)
    if (byKey === undefined) return
    const own = byKey.get(key)
    if (own?.wake !== undefined) return own.wake()
    for (const line of byKey.values()) {
      if (line.wake !== undefined) return line.wake()
    }
    for (const line of byKey.values()) line.released = true
  }

  return { wait, waiting: () => lines.size > 0, released }
}
