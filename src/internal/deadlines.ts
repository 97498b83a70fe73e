/**
 * One timer for many calls that share a time bound. Every call gets the same bound, so deadlines come
 * in the order calls start: a queue whose head is the next to expire, and one timer armed for the head
 * (a timer per call cost more than the rest of a hot call's bookkeeping). Used by the Redis script
 * runner and by the Service door's direct gRPC calls.
 *
 * @internal
 */
import { Fifo } from "../engine/fifo.js"

/** What `Deadlines` needs of a call. */
export interface Expiring {
  readonly settled: boolean
  /** When the call expires, on the monotonic `performance.now()` clock. */
  readonly deadline: number
  /** Fails the call as timed out, unless it settled already. */
  expire(timeoutMs: number): void
}

/**
 * The deadlines of calls in flight that share `timeoutMs`. Calls that settled leave the head as soon as
 * they reach it (when answers come in order, the queue holds about the calls in flight). The timer is
 * unreferenced while nothing is in flight, so an idle owner never keeps the process alive. A call that
 * settles from inside its own `expire` may report it (`settled()` then waits for the sweep to end).
 */
export class Deadlines {
  private readonly calls = new Fifo<Expiring>()
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  private sweeping = false

  constructor(readonly timeoutMs: number) {}

  /** Tracks `call` (whose deadline is now + timeoutMs) until it settles or expires. */
  track(call: Expiring): void {
    this.calls.push(call)
    if (this.timer === undefined) this.arm(this.timeoutMs)
    else if (this.calls.size === 1) this.timer.ref()
  }

  /** Drops settled calls from the head; called after a call settles. */
  settled(): void {
    if (this.sweeping) return
    const calls = this.calls
    while (calls.peek()?.settled === true) calls.shift()
    if (calls.size === 0) this.timer?.unref()
  }

  private arm(inMs: number): void {
    this.timer = setTimeout(this.expire, Math.max(1, inMs))
  }

  private readonly expire = (): void => {
    this.timer = undefined
    const now = performance.now()
    const calls = this.calls
    this.sweeping = true
    try {
      for (let call = calls.peek(); call !== undefined && call.deadline <= now; call = calls.peek()) {
        calls.shift()
        call.expire(this.timeoutMs)
      }
    } finally {
      this.sweeping = false
    }
    this.settled()
    const next = calls.peek()
    if (next !== undefined) this.arm(next.deadline - now)
  }
}
