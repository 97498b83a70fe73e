/**
 * The Watch feed: how the hub's denials reach its Watch streams without a decision ever paying per
 * watcher.
 *
 * A decision appends its denial to one bounded ring, sequence-numbered (and its sequence number to its
 * policy's index ring): two array stores and, the first time since the pump last ran, one signal to the
 * feed's single pump fiber. That is all it does, whatever the number of streams.
 *
 * The pump (a fiber of the feed's scope) lets events gather, then wakes the streams parked on the views
 * (all policies, or one) that received events: each stream at most once per cycle, however many events
 * the cycle holds. Cycles are `max(coalesceMs, streams / wakesPerSecond)` apart, so all the streams
 * together wake at most `wakesPerSecond` times a second (2000 by default: every 50 ms up to 100 streams,
 * every 500 ms at 1000).
 *
 * A woken stream reads at its own pace, by sequence number, up to `chunkSize` events per pull. A stream
 * whose call cannot take more (a reader that does not read) is not pulled, holds at most the chunk it
 * has, and is never woken. A stream that fell more than the ring's capacity behind skips to the oldest
 * event still held. Each stream sends at most `perStreamPerSecond` events per second of event time, and
 * all the streams together at most `perServerPerSecond`: a stream's cap for each second is
 * `min(perStreamPerSecond, max(1, floor(perServerPerSecond / streams)))`. Over its cap a stream skips the
 * rest of that second (found by binary search, never by reading each event). Skipped events are counted
 * (`dropped`). So the feed's work is bounded per server, not per watcher: ≤ `wakesPerSecond` wake-ups and
 * ≤ `max(perServerPerSecond, streams)` events a second.
 *
 * Memory: the ring holds at most `capacity` events (an index ring holds sequence numbers only, 8 bytes a
 * slot); a stream holds at most one chunk, its cursor and its counters.
 *
 * @since 0.2.0
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { DenialEvent } from "../../monitor/Snapshot.js"

/**
 * Options of the feed.
 *
 * @since 0.2.0
 * @category models
 */
export interface WatchFeedOptions {
  /** The policies a stream may follow alone (each gets an index ring). */
  readonly policies: Iterable<string>
  /** How many events the ring holds (a stream further behind loses the older ones). */
  readonly capacity: number
  /** The most events one stream sends per second of event time. */
  readonly perStreamPerSecond: number
  /** The most events all the streams together send per second of event time. */
  readonly perServerPerSecond: number
  /** The most events one pull of a stream hands over at once (default `DEFAULT_CHUNK_SIZE`). */
  readonly chunkSize?: number
  /** How long the pump lets events gather before it wakes streams, in ms (default `DEFAULT_COALESCE_MS`). */
  readonly coalesceMs?: number
  /**
   * The most stream wake-ups per second for all the streams together (default
   * `DEFAULT_WAKES_PER_SECOND`): the pump's cycle lengthens with the number of streams to stay under it.
   */
  readonly wakesPerSecond?: number
}

/**
 * The most stream wake-ups per second, all streams together, by default: a cycle of the pump wakes each
 * stream at most once, and cycles are `max(coalesceMs, streams / 2000 s)` apart (50 ms up to 100 streams,
 * 500 ms at 1000).
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_WAKES_PER_SECOND = 2000

/**
 * How long the pump lets events gather before waking the streams, by default: a stream wakes at most
 * once per cycle (20 times a second), taking what gathered in one chunk, instead of once per event.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_COALESCE_MS = 50

/**
 * The most events a stream takes from the ring at once by default: grpc-js's write buffer of a call holds
 * 16 messages before it asks the writer to wait, so a stream that cannot write holds at most this many
 * events in hand beside what its call buffers.
 *
 * @since 0.2.0
 * @category constants
 */
export const DEFAULT_CHUNK_SIZE = 16

/**
 * The feed's operations.
 *
 * @since 0.2.0
 * @category models
 */
export interface WatchFeed {
  /** Appends a denial: constant time, never fails, never waits, whatever the number of streams. */
  readonly append: (event: DenialEvent) => void
  /**
   * A reader of the live denials of `policy` ("" = every policy) from now on, capped as the feed says,
   * open for the life of the scope: each run of the pull gives the next events (at most `chunkSize`),
   * waiting for some if there are none yet, and fails with `Option.none()` once the feed's scope has
   * closed. A policy the feed does not know has no events.
   */
  readonly subscribe: (
    policy: string
  ) => Effect.Effect<Effect.Effect<Chunk.Chunk<DenialEvent>, Option.Option<never>>, never, Scope.Scope>
  /** `subscribe` as a `Stream`, which ends when the feed's scope closes. */
  readonly stream: (policy: string) => Stream.Stream<DenialEvent>
  /**
   * Lets streams follow `policies` alone from now on (a live reload added them); names already followed
   * keep their index. A removed policy keeps its index too: it merely receives no more events.
   *
   * @since 0.3.0
   */
  readonly follow: (policies: Iterable<string>) => void
  /** How many streams are open now. */
  readonly streams: () => number
  /** How many events streams have skipped so far (they fell behind the ring, or were over their cap). */
  readonly dropped: () => number
}

/** A one-shot wake-up that parked streams await; replaced each time it fires. */
class Wakeup {
  private deferred = Deferred.unsafeMake<void>(FiberId.none)

  get await(): Effect.Effect<void> {
    return Deferred.await(this.deferred)
  }

  fire(): void {
    const fired = this.deferred
    this.deferred = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(fired, Exit.void)
  }
}

/** A readable sequence of events: the whole ring, or one policy's events in it. */
interface View {
  /** The sequence number the next event will have. */
  head(): number
  /** The oldest sequence number still readable. */
  oldest(): number
  /** The event at `seq` (oldest ≤ seq < head), or undefined if the ring has overwritten it since. */
  at(seq: number): DenialEvent | undefined
  /** Fires when the view has received events since it last fired (the pump fires it). */
  readonly wakeup: Wakeup
  /** True while the view is on the pump's list of views to wake. */
  dirty: boolean
}

/** The ring of the last `capacity` denials, every policy. */
class Ring implements View {
  readonly events: Array<DenialEvent | undefined>
  readonly wakeup = new Wakeup()
  next: number
  dirty: boolean
  constructor(readonly capacity: number) {
    this.events = new Array<DenialEvent | undefined>(capacity).fill(undefined)
    this.next = 0
    this.dirty = false
  }

  append(event: DenialEvent): number {
    this.events[this.next % this.capacity] = event
    return this.next++
  }

  head(): number {
    return this.next
  }

  oldest(): number {
    return Math.max(0, this.next - this.capacity)
  }

  at(seq: number): DenialEvent | undefined {
    return seq >= this.oldest() && seq < this.next ? this.events[seq % this.capacity] : undefined
  }
}

/** One policy's events: the sequence numbers of its events in the ring. */
class PolicyIndex implements View {
  readonly seqs: Float64Array
  readonly wakeup = new Wakeup()
  next: number
  dirty: boolean
  constructor(private readonly ring: Ring) {
    this.seqs = new Float64Array(ring.capacity)
    this.next = 0
    this.dirty = false
  }

  append(seq: number): void {
    this.seqs[this.next % this.seqs.length] = seq
    this.next++
  }

  head(): number {
    return this.next
  }

  oldest(): number {
    return Math.max(0, this.next - this.seqs.length)
  }

  at(index: number): DenialEvent | undefined {
    return index >= this.oldest() && index < this.next ? this.ring.at(this.seqs[index % this.seqs.length]!) : undefined
  }
}

/** A view with no events, for a policy the feed does not know: its streams wait until the feed closes. */
const emptyView = (): View => ({
  head: () => 0,
  oldest: () => 0,
  at: () => undefined,
  wakeup: new Wakeup(),
  dirty: false
})

/**
 * The first position in [lo, hi) whose event is at or after `time` (hi if none). Events are appended in
 * the clock's order; a position whose event was overwritten counts as before `time` (overwritten
 * positions come first). A binary search: skipping a capped second never reads each event.
 */
const firstAtOrAfter = (view: View, lo: number, hi: number, time: number): number => {
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2)
    const event = view.at(mid)
    if (event === undefined || event.at < time) lo = mid + 1
    else hi = mid
  }
  return lo
}

const endOfStream = Effect.fail(Option.none())

/** The pump's pacing runs on the real clock, so that a test's clock never stalls the feed. */
const liveClock = Clock.make()

/**
 * Builds a feed; its pump runs, and its streams stay open, for the life of the scope.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: WatchFeedOptions): Effect.Effect<WatchFeed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ring = new Ring(Math.max(1, Math.floor(options.capacity)))
    const byPolicy = new Map<string, PolicyIndex>()
    for (const name of options.policies) byPolicy.set(name, new PolicyIndex(ring))
    const perStream = Math.max(1, Math.floor(options.perStreamPerSecond))
    const perServer = Math.max(1, Math.floor(options.perServerPerSecond))
    const chunkSize = Math.max(1, Math.floor(options.chunkSize ?? DEFAULT_CHUNK_SIZE))
    const coalesceMs = Math.max(0, options.coalesceMs ?? DEFAULT_COALESCE_MS)
    const wakesPerSecond = Math.max(1, options.wakesPerSecond ?? DEFAULT_WAKES_PER_SECOND)

    /** The view of a policy the feed does not know: it never has events. */
    const none = emptyView()
    /** The views that received events since the pump last ran. */
    const dirty: Array<View> = []
    let signal = Deferred.unsafeMake<void>(FiberId.none)
    let signalled = false
    let open = 0
    let dropped = 0
    let closed = false

    const markDirty = (view: View) => {
      if (view.dirty) return
      view.dirty = true
      dirty.push(view)
    }

    const append: WatchFeed["append"] = (event) => {
      const seq = ring.append(event)
      const index = byPolicy.get(event.policy)
      if (index !== undefined) index.append(seq)
      // With no stream open nothing waits: the ring alone records the event.
      if (open === 0 || closed) return
      markDirty(ring)
      if (index !== undefined) markDirty(index)
      if (!signalled) {
        signalled = true
        Deferred.unsafeDone(signal, Exit.void)
      }
    }

    /** One cycle of the pump: wakes every stream parked on a view that received events. */
    const wakeParked = Effect.sync(() => {
      signal = Deferred.unsafeMake<void>(FiberId.none)
      signalled = false
      for (const view of dirty) {
        view.dirty = false
        view.wakeup.fire()
      }
      dirty.length = 0
    })
    // After a signal the pump lets events gather for `coalesceMs` (on the live clock: a test's clock never
    // stalls it), so a stream wakes at most once per cycle for all of them.
    const gather = Effect.suspend(() => {
      const ms = Math.max(coalesceMs, (open * 1000) / wakesPerSecond)
      return ms > 0 ? Effect.withClock(Effect.sleep(ms), liveClock) : Effect.yieldNow()
    })
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.zipRight(Effect.suspend(() => Deferred.await(signal)), gather), wakeParked))
    )

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        ring.wakeup.fire()
        for (const index of byPolicy.values()) index.wakeup.fire()
        none.wakeup.fire()
      })
    )

    /**
     * The pull of one stream over `view`, from its head on: the next events it may send (at most
     * `chunkSize`), or, when there are none yet, a wait for the view's next events and then the pull again.
     * A stream over its cap for a second skips that second's events (counted as dropped) each time it
     * wakes: at most once per cycle of the pump.
     */
    const reader = (view: View): Effect.Effect<Chunk.Chunk<DenialEvent>, Option.Option<never>> => {
      let cursor = view.head()
      let second = Number.NaN
      let sent = 0
      let cap = perStream
      const pull: Effect.Effect<Chunk.Chunk<DenialEvent>, Option.Option<never>> = Effect.suspend(() => {
        if (closed) return endOfStream
        const out: Array<DenialEvent> = []
        while (out.length < chunkSize) {
          const head = view.head()
          if (cursor >= head) break
          const oldest = view.oldest()
          if (cursor < oldest) {
            dropped += oldest - cursor
            cursor = oldest
            continue
          }
          const event = view.at(cursor)
          if (event === undefined) {
            // Overwritten in the ring since its policy indexed it.
            dropped++
            cursor++
            continue
          }
          const eventSecond = Math.floor(event.at / 1000)
          if (eventSecond !== second) {
            second = eventSecond
            sent = 0
            cap = Math.min(perStream, Math.max(1, Math.floor(perServer / Math.max(1, open))))
          }
          if (sent >= cap) {
            const next = firstAtOrAfter(view, cursor, head, (second + 1) * 1000)
            dropped += next - cursor
            cursor = next
            continue
          }
          sent++
          cursor++
          out.push(event)
        }
        return out.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(out)) : Effect.zipRight(view.wakeup.await, pull)
      })
      return pull
    }

    const subscribe: WatchFeed["subscribe"] = (policy) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          open++
          // The reader starts at the head as it is now: only what happens from here on.
          return reader(policy === "" ? ring : byPolicy.get(policy) ?? none)
        }),
        () =>
          Effect.sync(() => {
            open--
          })
      )

    const stream: WatchFeed["stream"] = (policy) =>
      Stream.unwrapScoped(Effect.map(subscribe(policy), Stream.repeatEffectChunkOption))

    const follow: WatchFeed["follow"] = (policies) => {
      for (const name of policies) if (!byPolicy.has(name)) byPolicy.set(name, new PolicyIndex(ring))
    }

    return { append, subscribe, stream, follow, streams: () => open, dropped: () => dropped }
  })
