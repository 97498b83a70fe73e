/**
 * The concurrency axis: one in-flight ceiling per policy that moves with what releases report.
 * A small mutable state machine, deterministic given the sequence of calls (no clock of its own:
 * callers pass each request's round-trip time).
 *
 * The ceiling is an internal estimate (fractional for gradient2); `limit = floor(estimate)`, always in
 * [minLimit, maxLimit] (when minLimit > maxLimit, maxLimit wins). `tryAcquire` takes a slot only while
 * `inflight < limit`. A release "when the guard was near its limit" means the in-flight count just before
 * that release (this request included) was at least half the limit, as in TCP-style limiters: a healthy
 * sample from a barely used guard says nothing about whether the ceiling could be higher.
 *
 * Algorithms:
 * - `fixed`: the ceiling is `initialLimit` clamped to [minLimit, maxLimit], forever.
 * - `aimd`: a dropped release sets `estimate = max(minLimit, floor(estimate * backoffRatio))`; a healthy
 *   release near the limit adds 1 (up to maxLimit).
 * - `gradient2`: every healthy release records its RTT. shortRtt = the mean of the last `rttWindow`
 *   samples; longRtt = an exponential moving average of every sample with factor
 *   `smoothing / rttWindow` (seeded by the first sample), so it moves `rttWindow` times slower.
 *   gradient = clamp(tolerance * longRtt / shortRtt, 0.5, 1) (1 when shortRtt is 0);
 *   target = estimate * gradient + sqrt(estimate) (the sqrt is the queue allowance);
 *   estimate = clamp(estimate * (1 - smoothing) + target * smoothing, minLimit, maxLimit), except that a
 *   release far from the limit never raises it. A dropped release multiplies the estimate by
 *   `backoffRatio` (clamped) and records no RTT: a failure's duration is not a queueing signal.
 *
 * @since 0.1.0
 */

/**
 * The concurrency parameters (`Policy.Concurrency`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ConcurrencyOptions {
  readonly algorithm: "fixed" | "aimd" | "gradient2"
  readonly minLimit: number
  readonly maxLimit: number
  readonly initialLimit: number
  readonly backoffRatio: number
  readonly smoothing: number
  readonly tolerance: number
  readonly rttWindow: number
}

const clamp = (value: number, lo: number, hi: number): number => value < lo ? lo : value > hi ? hi : value

/**
 * A per-policy concurrency guard.
 *
 * @since 0.1.0
 * @category models
 */
export class Guard {
  readonly algorithm: ConcurrencyOptions["algorithm"]
  readonly minLimit: number
  readonly maxLimit: number
  private readonly backoffRatio: number
  private readonly smoothing: number
  private readonly longFactor: number
  private readonly tolerance: number
  private readonly samples: Float64Array
  private estimate: number
  private held = 0
  private sampleCount = 0
  private nextSample = 0
  private sampleSum = 0
  private longTerm = 0
  private last = 0

  constructor(options: ConcurrencyOptions) {
    this.algorithm = options.algorithm
    this.maxLimit = Math.max(1, Math.floor(options.maxLimit))
    this.minLimit = clamp(Math.floor(options.minLimit), 1, this.maxLimit)
    this.backoffRatio = options.backoffRatio
    this.smoothing = options.smoothing
    this.tolerance = options.tolerance
    const window = Math.max(1, Math.floor(options.rttWindow))
    this.longFactor = options.smoothing / window
    this.samples = new Float64Array(window)
    this.estimate = clamp(Math.floor(options.initialLimit), this.minLimit, this.maxLimit)
  }

  /** The current ceiling on in-flight requests. */
  get limit(): number {
    return Math.floor(this.estimate)
  }

  /** Requests currently holding a slot. */
  get inflight(): number {
    return this.held
  }

  /** The RTT of the latest healthy release (ms), 0 before any. */
  get lastRttMs(): number {
    return this.last
  }

  /** The mean RTT of the last `rttWindow` healthy releases (ms), 0 before any. */
  get shortRttMs(): number {
    return this.sampleCount === 0 || this.sampleSum <= 0 ? 0 : this.sampleSum / this.sampleCount
  }

  /** The slow moving average of RTTs (ms), 0 before any. */
  get longRttMs(): number {
    return this.longTerm
  }

  /** Whether `tryAcquire` would take a slot now (`inflight < limit`); changes nothing. */
  canAcquire(): boolean {
    return this.held < Math.floor(this.estimate)
  }

  /** Takes a slot when `inflight < limit`; returns whether it did. */
  tryAcquire(): boolean {
    if (this.held >= Math.floor(this.estimate)) return false
    this.held++
    return true
  }

  /** Gives a slot back as if it had never been taken: no RTT sample, no change to the ceiling. */
  cancel(): void {
    if (this.held > 0) this.held--
  }

  /**
   * Gives a slot back. `dropped` signals an overload (error, timeout, reclaimed lease); `rttMs` is how
   * long the request held its slot (a negative or non-finite value counts as 0). Returns false, and
   * changes nothing, when no slot was held.
   */
  release(dropped: boolean, rttMs: number): boolean {
    if (this.held === 0) return false
    const inflightBefore = this.held
    this.held--
    const rtt = Number.isFinite(rttMs) && rttMs > 0 ? rttMs : 0
    if (!dropped) this.record(rtt)
    switch (this.algorithm) {
      case "fixed":
        return true
      case "aimd":
        this.aimd(dropped, inflightBefore)
        return true
      case "gradient2":
        this.gradient2(dropped, inflightBefore)
        return true
    }
  }

  private record(rtt: number): void {
    this.last = rtt
    const window = this.samples.length
    if (this.sampleCount === 0) this.longTerm = rtt
    else this.longTerm = this.longTerm * (1 - this.longFactor) + rtt * this.longFactor
    const evicted = this.sampleCount === window ? this.samples[this.nextSample]! : 0
    this.samples[this.nextSample] = rtt
    if (this.sampleCount < window) this.sampleCount++
    this.nextSample++
    if (this.nextSample === window) {
      // Once per lap, re-add the ring exactly so the running sum carries no accumulated rounding error.
      this.nextSample = 0
      let sum = 0
      for (let i = 0; i < window; i++) sum += this.samples[i]!
      this.sampleSum = sum
    } else {
      this.sampleSum = this.sampleSum - evicted + rtt
    }
  }

  private aimd(dropped: boolean, inflightBefore: number): void {
    if (dropped) {
      this.estimate = clamp(Math.floor(this.estimate * this.backoffRatio), this.minLimit, this.maxLimit)
    } else if (inflightBefore * 2 >= Math.floor(this.estimate)) {
      this.estimate = clamp(this.estimate + 1, this.minLimit, this.maxLimit)
    }
  }

  private gradient2(dropped: boolean, inflightBefore: number): void {
    if (dropped) {
      this.estimate = clamp(this.estimate * this.backoffRatio, this.minLimit, this.maxLimit)
      return
    }
    const shortRtt = this.shortRttMs
    const gradient = shortRtt > 0 ? clamp(this.tolerance * this.longTerm / shortRtt, 0.5, 1) : 1
    const target = this.estimate * gradient + Math.sqrt(this.estimate)
    const next = clamp(this.estimate * (1 - this.smoothing) + target * this.smoothing, this.minLimit, this.maxLimit)
    const nearLimit = inflightBefore * 2 >= Math.floor(this.estimate)
    if (next < this.estimate || nearLimit) this.estimate = next
  }
}
