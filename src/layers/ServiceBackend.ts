/**
 * The Service door: the `RateLimiter` service answered by a ThrottleKit server over gRPC (ours, or the
 * reference `throttlekit-server`). The channel is scoped and closed with the layer; every call carries a
 * deadline (1 s by default) and a missed one is `ServiceUnavailable`; interrupting a call cancels it on
 * the wire (except a check that joined a batch). Under load, concurrent checks to one policy leave together
 * as one `CheckMany` (`coalesceChecks`, on by default). Inputs are validated here first, so bad input never
 * leaves the process.
 *
 * Consuming calls (Check, CheckMany, Debit, Admit) are never retried: a lost response may still have
 * consumed. Only the idempotent ones (Peek, Forecast, Release, Heartbeat) retry, and only when asked.
 *
 * @since 0.1.0
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Admission, Decision, Forecast } from "../Decision.js"
import { BackendError, InvalidArgument, type Operation, type RateLimiterError } from "../Errors.js"
import { type CallOptions, type UnaryMethod, unaryWith } from "../grpc/client.js"
import * as CoalescedChecks from "../grpc/CoalescedChecks.js"
import { admissionFromWire, decisionFromWire, forecastFromWire, fromInt64 } from "../grpc/convert.js"
import { type CheckResponse, RateLimiter as RateLimiterRpc } from "../grpc/generated/throttlekit_pb.js"
import { toRateLimiterError } from "../grpc/status.js"
import { makeAdmit } from "../internal/admission.js"
import {
  type AdmitOptions,
  type HeartbeatResult,
  type Leases,
  RateLimiter,
  type RateLimiterService
} from "../services/RateLimiter.js"
import * as Validate from "../Validate.js"

/**
 * Options of the Service door.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServiceBackendOptions {
  /** The server, as a gRPC target: "host:port", "dns:///host:port", "unix:/path". */
  readonly target: string
  /** Channel credentials (default insecure; `grpc.credentials.createSsl(...)` for TLS or mTLS). */
  readonly credentials?: grpc.ChannelCredentials
  /** The deadline of each call (default 1 second). */
  readonly deadline?: Duration.DurationInput
  /** The server's lease TTL in ms (default 2000); kept-alive leases are renewed every half of it. */
  readonly leaseTtlMs?: number
  /** Retries of the idempotent calls (Peek, Forecast, Release, Heartbeat) on `ServiceUnavailable` (default 0). */
  readonly idempotentRetries?: number
  /**
   * Coalesce checks under load (default true): once `CoalescedChecks.MAX_IN_FLIGHT` check RPCs are in
   * flight, further checks for the same policy and cost leave together as one `CheckMany` (see
   * `CoalescedChecks`). A check in a batch is not cancelled on the wire when its fiber is interrupted.
   */
  readonly coalesceChecks?: boolean
  /**
   * Extra grpc-js channel options. By default reconnect backoff is capped at 5 s (`RECONNECT_BACKOFF_CAP_MS`)
   * instead of grpc-js's 120 s, so a client recovers within seconds of a server restart.
   */
  readonly channelOptions?: grpc.ChannelOptions
}

/**
 * The default per-call deadline.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_DEADLINE: Duration.Duration = Duration.seconds(1)

/**
 * The default cap on the channel's reconnect backoff, in ms. grpc-js grows the backoff to 120 s while a
 * server is down, so after a long restart its clients kept failing for up to two more minutes.
 *
 * @since 0.1.0
 * @category constants
 */
export const RECONNECT_BACKOFF_CAP_MS = 5000

const BACKEND = "service"

/** A hint (hold, value) as an int64: a finite number ≥ 0 (fractions truncated), else `InvalidArgument`. */
const hintToWire = (value: number | undefined, argument: string): Effect.Effect<bigint, InvalidArgument> => {
  if (value === undefined) return Effect.succeed(0n)
  if (!Number.isFinite(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    return Effect.fail(
      new InvalidArgument({ argument, reason: `must be a finite number from 0 to 2^53 - 1, got ${value}` })
    )
  }
  return Effect.succeed(BigInt(Math.trunc(value)))
}

/**
 * Builds the service over a scoped channel to `options.target`. Fails with `InvalidArgument` when the
 * target cannot be parsed. Nothing is dialled until the first call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ServiceBackendOptions
): Effect.Effect<RateLimiterService, InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const service = `throttlekit-server at ${options.target}`
    const client = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new grpc.Client(
            options.target,
            options.credentials ?? grpc.credentials.createInsecure(),
            { "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_CAP_MS, ...options.channelOptions }
          ),
        catch: (error) =>
          new InvalidArgument({ argument: "target", reason: error instanceof Error ? error.message : String(error) })
      }),
      (client) => Effect.sync(() => client.close())
    )
    const callOptions: CallOptions = {
      deadlineMs: Duration.toMillis(Duration.decode(options.deadline ?? DEFAULT_DEADLINE))
    }
    const retries = Math.max(0, Math.floor(options.idempotentRetries ?? 0))
    const retryIdempotent = <A>(effect: Effect.Effect<A, RateLimiterError>) =>
      retries === 0 ? effect : effect.pipe(
        Effect.retry({
          schedule: Schedule.exponential(Duration.millis(25)),
          times: retries,
          while: (error) => error._tag === "ServiceUnavailable"
        })
      )

    const call = <M extends UnaryMethod>(
      method: M,
      request: MessageInitShape<M["input"]>,
      policy: string,
      operation: Operation
    ) =>
      unaryWith(
        client,
        method,
        create<M["input"]>(method.input, request),
        callOptions,
        Effect.succeed,
        (error) => toRateLimiterError(error, { service, policy, operation })
      )

    const checkMethod = RateLimiterRpc.method.check
    const coalesced = options.coalesceChecks === false ? undefined : CoalescedChecks.make({
      client,
      callOptions,
      backend: BACKEND,
      toError: (error, policy) => toRateLimiterError(error, { service, policy, operation: "check" })
    })
    const checkResponse = (response: CheckResponse) => decisionFromWire(response.decision, BACKEND)

    // The hot path: plain argument checks, then one `Effect.async` that sends the request (a literal
    // message, not `create`) and answers the decision or the typed error from the call's callback. It
    // carries no span of its own: `Effect.fn`'s span, its stack capture per call and the generator's
    // steps were most of this door's own cost per check (see bench/). Callers that want a span wrap it.
    const check = (policy: string, key: string, cost: number = 1): Effect.Effect<Decision, RateLimiterError> => {
      const keyProblem = Validate.keyProblem(key)
      if (keyProblem !== undefined) return Effect.fail(new InvalidArgument({ argument: "key", reason: keyProblem }))
      const costProblem = Validate.costProblem(cost)
      if (costProblem !== undefined) return Effect.fail(new InvalidArgument({ argument: "cost", reason: costProblem }))
      if (coalesced !== undefined) return coalesced.check(policy, key, cost)
      return unaryWith(
        client,
        checkMethod,
        CoalescedChecks.checkRequest(policy, key, cost),
        callOptions,
        checkResponse,
        (error) => toRateLimiterError(error, { service, policy, operation: "check" })
      )
    }

    const checkMany = Effect.fn("ServiceBackend.checkMany")(
      function*(
        policy: string,
        keys: ReadonlyArray<string>,
        cost: number = 1
      ): Effect.fn.Return<ReadonlyArray<Decision>, RateLimiterError> {
        yield* Validate.keys(keys)
        const amount = yield* Validate.cost(cost)
        const response = yield* call(
          RateLimiterRpc.method.checkMany,
          { policy, keys: [...keys], cost: BigInt(amount) },
          policy,
          "checkMany"
        )
        if (response.decisions.length !== keys.length) {
          return yield* Effect.fail(toProtocolError(`${response.decisions.length} decisions for ${keys.length} keys`))
        }
        return yield* Effect.forEach(response.decisions, (decision) => decisionFromWire(decision, BACKEND))
      }
    )

    const peek = Effect.fn("ServiceBackend.peek")(
      function*(policy: string, key: string): Effect.fn.Return<Decision, RateLimiterError> {
        yield* Validate.key(key)
        const response = yield* retryIdempotent(call(RateLimiterRpc.method.peek, { policy, key }, policy, "peek"))
        return yield* decisionFromWire(response.decision, BACKEND)
      }
    )

    const forecast = Effect.fn("ServiceBackend.forecast")(
      function*(policy: string, key: string, cost: number = 1): Effect.fn.Return<Forecast, RateLimiterError> {
        yield* Validate.key(key)
        const amount = yield* Validate.cost(cost)
        const response = yield* retryIdempotent(
          call(RateLimiterRpc.method.forecast, { policy, key, cost: BigInt(amount) }, policy, "forecast")
        )
        return yield* forecastFromWire(response.forecast, BACKEND)
      }
    )

    const debit = Effect.fn("ServiceBackend.debit")(
      function*(policy: string, key: string, tokens: number = 1): Effect.fn.Return<Decision, RateLimiterError> {
        yield* Validate.key(key)
        const amount = yield* Validate.cost(tokens, "tokens")
        const response = yield* call(
          RateLimiterRpc.method.debit,
          { policy, key, tokens: BigInt(amount) },
          policy,
          "debit"
        )
        return yield* decisionFromWire(response.decision, BACKEND)
      }
    )

    const acquire = Effect.fn("ServiceBackend.acquire")(
      function*(
        policy: string,
        key: string,
        admitOptions: Pick<AdmitOptions, "cost" | "hold" | "value"> = {}
      ): Effect.fn.Return<Admission, RateLimiterError> {
        yield* Validate.key(key)
        const cost = yield* Validate.cost(admitOptions.cost ?? 1)
        const hold = yield* hintToWire(admitOptions.hold, "hold")
        const value = yield* hintToWire(admitOptions.value, "value")
        const response = yield* call(
          RateLimiterRpc.method.admit,
          { policy, key, cost: BigInt(cost), hold, value },
          policy,
          "admit"
        )
        return yield* admissionFromWire(response, BACKEND)
      }
    )

    const release = Effect.fn("ServiceBackend.release")(
      function*(leaseId: string, dropped: boolean): Effect.fn.Return<void, RateLimiterError> {
        yield* retryIdempotent(call(RateLimiterRpc.method.release, { leaseId, dropped }, "", "admit"))
      }
    )

    const heartbeat = Effect.fn("ServiceBackend.heartbeat")(
      function*(leaseIds: ReadonlyArray<string>): Effect.fn.Return<HeartbeatResult, RateLimiterError> {
        const response = yield* retryIdempotent(
          call(RateLimiterRpc.method.heartbeat, { leaseIds: [...leaseIds] }, "", "admit")
        )
        return {
          live: response.liveIds,
          reclaimed: response.reclaimedIds,
          nextDeadline: fromInt64(response.nextDeadline)
        }
      }
    )

    const leases: Leases = { ttlMs: options.leaseTtlMs ?? 2000, acquire, release, heartbeat }
    const admit = yield* makeAdmit(leases)

    return { backend: BACKEND, check, checkMany, peek, forecast, debit, admit, leases }
  })

/** A response that breaks the contract (e.g. fewer decisions than keys). */
const toProtocolError = (detail: string): RateLimiterError =>
  new BackendError({ backend: BACKEND, code: "PROTOCOL", detail })

/**
 * The Service door as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ServiceBackendOptions): Layer.Layer<RateLimiter, InvalidArgument> =>
  Layer.scoped(RateLimiter, make(options))

/**
 * The configuration `layerConfig` reads by default: `THROTTLEKIT_TARGET` (required) and
 * `THROTTLEKIT_DEADLINE` (a duration such as "500 millis"; default 1 second).
 *
 * @since 0.1.0
 * @category config
 */
export const defaultConfig: Config.Config<ServiceBackendOptions> = Config.all({
  target: Config.string("THROTTLEKIT_TARGET"),
  deadline: Config.withDefault(Config.duration("THROTTLEKIT_DEADLINE"), DEFAULT_DEADLINE)
})

/**
 * The Service door configured from `Config` (by default from the environment, see `defaultConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<ServiceBackendOptions> = defaultConfig
): Layer.Layer<RateLimiter, ConfigError.ConfigError | InvalidArgument> =>
  Layer.scoped(RateLimiter, Effect.flatMap(config, make))
