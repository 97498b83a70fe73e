/**
 * The Redis server's clock as this process sees it: the offset between `Date.now()` and Redis `TIME`,
 * taken from a round trip, so a deadline of this process can be written as a fence on the Redis clock
 * (the `fence` ARGV of the consuming scripts). The offset is sampled when the connection opens and again
 * in the background every 30 s while calls flow; a sample is kept when its round trip is short, so a slow
 * answer never widens the uncertainty much.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { BackendError, ServiceUnavailable } from "../Errors.js"
import type { RedisHandle } from "./RedisClient.js"
import { classify, timedOut } from "./RedisErrors.js"

/** One reading of Redis `TIME` against the local clock. */
interface Sample {
  /** Redis time minus local time, in ms, at the middle of the round trip. */
  readonly offsetMs: number
  /** Half the round trip, in ms: how far the offset may be off. */
  readonly uncertaintyMs: number
}

/** How often the offset is read again while calls flow. */
const RESAMPLE_EVERY_MS = 30_000

/** A new sample replaces the current one when its round trip is at most this (or no worse than it). */
const GOOD_ROUND_TRIP_MS = 20

const readTime = (client: RedisHandle): Promise<Sample> => {
  const before = Date.now()
  return (client.call("TIME") as Promise<[string, string]>).then((reply) => {
    const after = Date.now()
    const redisMs = Number(reply[0]) * 1000 + Math.floor(Number(reply[1]) / 1000)
    return { offsetMs: redisMs - (before + after) / 2, uncertaintyMs: Math.ceil((after - before) / 2) }
  })
}

/**
 * The Redis clock of one connection.
 *
 * @since 0.2.0
 * @category models
 */
export class RedisTime {
  private sampledAt: number
  private sampling = false

  constructor(private readonly client: RedisHandle, private current: Sample) {
    this.sampledAt = Date.now()
  }

  /**
   * The fence for a call that must not apply later than `withinMs` from now: that instant on the Redis
   * clock, in epoch-ms, moved earlier by the offset's uncertainty (so the fence never falls after the
   * local instant). Reads the offset again in the background when the last reading is old.
   */
  fenceAfter(withinMs: number): number {
    const now = Date.now()
    if (now - this.sampledAt >= RESAMPLE_EVERY_MS) this.resample(now)
    return Math.max(1, Math.floor(now + this.current.offsetMs + withinMs - this.current.uncertaintyMs))
  }

  /** The current offset (Redis minus local, ms) and its uncertainty. */
  get offset(): Sample {
    return this.current
  }

  private resample(now: number): void {
    if (this.sampling) return
    this.sampling = true
    this.sampledAt = now
    readTime(this.client).then(
      (sample) => {
        this.sampling = false
        if (sample.uncertaintyMs <= Math.max(GOOD_ROUND_TRIP_MS, this.current.uncertaintyMs)) this.current = sample
      },
      // A failed reading keeps the last offset; the next call after the interval tries again.
      () => {
        this.sampling = false
      }
    )
  }
}

/**
 * Reads the Redis clock once (bounded by `timeoutMs`) and returns the clock of `client`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  client: RedisHandle,
  timeoutMs: number
): Effect.Effect<RedisTime, ServiceUnavailable | BackendError> =>
  Effect.tryPromise({ try: () => readTime(client), catch: classify }).pipe(
    Effect.timeoutFail({ duration: Math.max(timeoutMs, 1000), onTimeout: () => timedOut(timeoutMs, "TIME") }),
    Effect.withClock(Clock.make()),
    Effect.map((sample) => new RedisTime(client, sample)),
    Effect.withSpan("RedisTime.make")
  )
