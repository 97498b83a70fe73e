/**
 * What the server counts beside the Monitor hub, for `/metrics`: the calls it answered with an error
 * status (by method and code), the checks it answered with a fail-mode decision while the store was
 * down (by policy), and with insurance the calls it decided alone while the store was unreachable (by
 * policy) and whether it is unreachable now. Both are counted where the answer is made, on the failure path only: a successful
 * call costs nothing here. Decisions are not counted here: the Monitor tap already records each one in
 * the hub, which `/metrics` reads.
 *
 * The keys are bounded by the server's configuration (its methods, the 17 gRPC codes, its policies),
 * never by what a caller sends.
 *
 * @since 0.3.0
 */
import * as grpc from "@grpc/grpc-js"

/**
 * One counted series: its labels and its count.
 *
 * @since 0.3.0
 * @category models
 */
export interface Counted<L> {
  readonly labels: L
  readonly count: number
}

/**
 * The name of a gRPC status code, e.g. `NOT_FOUND` (the number as text for a code grpc-js does not name).
 *
 * @since 0.3.0
 * @category utils
 */
export const codeName = (code: number): string => {
  const name: unknown = (grpc.status as Record<number, unknown>)[code]
  return typeof name === "string" ? name : String(code)
}

/**
 * The server's counters. `rpcFailed` and `outageAnswered` are the hooks the gRPC server and the fail
 * mode call; `errors` and `outages` read them, in first-seen order.
 *
 * @since 0.3.0
 * @category models
 */
export class ServerCounters {
  private readonly failures = new Map<string, { readonly method: string; readonly code: string; count: number }>()
  private readonly outageAnswers = new Map<string, { readonly policy: string; count: number }>()
  private readonly degradedAnswers = new Map<string, { readonly policy: string; count: number }>()
  private degradedNow = false

  /** A call of `method` (e.g. `throttlekit.v1.RateLimiter/Check`) was answered with status `code`. */
  readonly rpcFailed = (method: string, code: number): void => {
    const key = `${method}\n${code}`
    const entry = this.failures.get(key)
    if (entry !== undefined) entry.count++
    else this.failures.set(key, { method, code: codeName(code), count: 1 })
  }

  /** `answers` checks of `policy` were answered with the fail mode's decision (the store was down). */
  readonly outageAnswered = (policy: string, answers: number): void => {
    const entry = this.outageAnswers.get(policy)
    if (entry !== undefined) entry.count += answers
    else this.outageAnswers.set(policy, { policy, count: answers })
  }

  /**
   * `answers` calls of `policy` were decided in this server alone, against its share, while the store was
   * unreachable (insurance).
   *
   * @since 0.3.0
   */
  readonly degradedAnswered = (policy: string, answers: number): void => {
    const entry = this.degradedAnswers.get(policy)
    if (entry !== undefined) entry.count += answers
    else this.degradedAnswers.set(policy, { policy, count: answers })
  }

  /**
   * The store went unreachable (`true`: insurance decides) or came back (`false`).
   *
   * @since 0.3.0
   */
  readonly storeDegraded = (degraded: boolean): void => {
    this.degradedNow = degraded
  }

  /** The degraded answers so far, by policy. @since 0.3.0 */
  degraded(): ReadonlyArray<Counted<{ readonly policy: string }>> {
    return Array.from(this.degradedAnswers.values(), (e) => ({ labels: { policy: e.policy }, count: e.count }))
  }

  /** Whether the store is unreachable now and insurance decides. @since 0.3.0 */
  isDegraded(): boolean {
    return this.degradedNow
  }

  /** The error answers so far, by method and code. */
  errors(): ReadonlyArray<Counted<{ readonly method: string; readonly code: string }>> {
    return Array.from(this.failures.values(), (e) => ({ labels: { method: e.method, code: e.code }, count: e.count }))
  }

  /** The fail-mode answers so far, by policy. */
  outages(): ReadonlyArray<Counted<{ readonly policy: string }>> {
    return Array.from(this.outageAnswers.values(), (e) => ({ labels: { policy: e.policy }, count: e.count }))
  }
}
