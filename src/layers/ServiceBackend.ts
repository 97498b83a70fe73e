/**
 * The Service door: a `RemoteStore` whose primitives are the RPCs of a ThrottleKit server (ours, or the
 * reference `throttlekit-server`), and the `RateLimiter` front over it (`make`, `layer`). The channel
 * (`grpc/channel.ts`, as the Fleet and Monitor clients dial) is scoped and closed with the layer; every
 * call carries a deadline (1 s by default, kept by one timer for all the calls in flight, see
 * `grpc/client.ts`); a missed one is `OutcomeUnknown` for a consuming call and `ServiceUnavailable` for a
 * read; interrupting a call cancels it on the wire (except a check that joined a batch).
 * Under load, concurrent checks to one policy leave together as one `CheckMany` (`coalesceChecks`, on by
 * default). The store validates nothing: the front checks every argument first, so bad input never
 * leaves the process.
 *
 * Layers: `layer(options)` and `layerConfig(config)` (the same options, each a `Config`). There is no
 * `layerFile`: this door holds no policies, the server does.
 *
 * Consuming calls (Check, CheckMany, Debit, Admit) are never retried: a lost response may still have
 * consumed. Only the idempotent ones (Peek, Forecast, Release, Heartbeat) retry, and only when asked.
 *
 * **The probe.** When an argument is bad, the front first asks the store (`probe`) whether the policy
 * exists and serves the operation, so an unknown policy (`PolicyNotFound`) or a wrong kind
 * (`OperationNotSupported`) is reported before the argument, as on the Memory and Redis doors. The probe
 * is one round trip (within the deadline), only on that path, and consumes nothing:
 * - check / checkMany / debit / admit ask a `CheckMany` with no keys. NOT_FOUND is `PolicyNotFound`.
 *   An answer means the policy is a rate limiter: fine for check / checkMany, `OperationNotSupported`
 *   for debit / admit. UNIMPLEMENTED means it is not a rate limiter: `OperationNotSupported` for check /
 *   checkMany.
 * - peek / forecast ask the operation itself on a placeholder key (both are read-only on every server;
 *   ours answers them on a meter too, the reference server UNIMPLEMENTED):
 *   NOT_FOUND and UNIMPLEMENTED are the policy's fault (this covers a strategy without peek or forecast
 *   too); an answer means the operation is served.
 * - UNIMPLEMENTED counts only with the contract's `policy "x" does not support <op>` text: a server
 *   without the RPC at all (grpc's own UNIMPLEMENTED) says nothing about the policy. Anything else
 *   (UNAVAILABLE, a missed deadline, another status) cannot tell either, and the argument's fault is
 *   reported.
 *
 * - debit / admit whose `CheckMany` is the policy's UNIMPLEMENTED (not a rate limiter) then ask `Peek`
 *   on the placeholder key: our server answers it on a meter (a token budget peeks), so an answer is a
 *   meter's, and an admit on it is `OperationNotSupported`.
 *
 * **A cost above the capacity.** The server knows the policy, so such a cost is sent; our server (and
 * the contract) deny it, consuming nothing on a plain strategy. The front turns the denial into
 * `CapacityExceeded` where the answer proves it (`overCapacity`, default `"fail"`):
 * - check / checkMany on a rate limiter: a denial with `cost > limit`, since a rate limiter reports its
 *   capacity as `limit` (gcra `burst`, tokenBucket `capacity`, the windows' and quotas' `limit`; a
 *   twoTier or federated one its strategy's). A fair escrow reports the tenant's current share instead,
 *   which grows as tenants leave, so before converting a check the store asks `isLimiter` (a keyless
 *   `CheckMany`, consuming nothing, only on that path): a fair escrow's denial stays a denial;
 * - admit: a denial bound on the `rate` axis with `cost > limit` (the rate axis reports its capacity);
 * - debit: never (a token budget admits a debit of any size in a fresh window).
 * A cost of 1 fits every policy, so those calls pay nothing for this.
 *
 * Blind spot: debit or admit with a bad argument on a policy that is a meter or an admitter of the other
 * kind, where Peek cannot tell them apart: debit on an admitter (any server), and admit on a meter of
 * the reference server (which answers UNIMPLEMENTED to Peek on a meter). Only a Debit or an Admit could
 * tell them apart, and both consume on a server that takes the call, so the argument's fault is reported
 * (the Memory and Redis doors report `OperationNotSupported`). Against the reference server, a fair limiter also answers
 * UNIMPLEMENTED to `CheckMany`, so a bad `check` on one reports `OperationNotSupported` (our server
 * serves no fair limiters).
 *
 * @since 0.1.0
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Admission, Decision, Forecast } from "../Decision.js"
import { type InvalidArgument, type Operation, OperationNotSupported, type RateLimiterError } from "../Errors.js"
import { acquireChannel } from "../grpc/channel.js"
import { type CallOptions, unary, type UnaryMethod, unaryWith } from "../grpc/client.js"
import * as CoalescedChecks from "../grpc/CoalescedChecks.js"
import { admissionFromWire, decisionFromWire, decisionsFromWire, forecastFromWire, fromInt64 } from "../grpc/convert.js"
import { type CheckResponse, RateLimiter as RateLimiterRpc } from "../grpc/generated/throttlekit_pb.js"
import { type GrpcStatusError, isUnsupportedByPolicy, toRateLimiterError } from "../grpc/status.js"
import {
  FAIR_SERVES,
  type FrontOptions,
  make as makeFront,
  RateLimiter,
  type RateLimiterService
} from "../services/RateLimiter.js"
import { type AcquireOptions, type HeartbeatResult, type RemoteStore, Store } from "../services/RateLimiterStore.js"

/**
 * Options of the Service door.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServiceBackendOptions extends FrontOptions {
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

/**
 * The key the probe peeks and forecasts (both read-only): any valid key would do.
 *
 * @since 0.2.0
 * @category constants
 * @internal
 */
export const PROBE_KEY = "throttlekit:probe"

const BACKEND = "service"

/** A hint (hold, value) the front checked (finite, 0 to 2^53 − 1) as an int64, fractions truncated. */
const hintToWire = (value: number): bigint => BigInt(Math.trunc(value))

/**
 * The Service store over a scoped channel to `options.target`: the primitives as RPCs, on arguments the
 * front has checked, and the `probe` (see the module doc). Fails with `InvalidArgument` when the target
 * cannot be parsed. Nothing is dialled until the first call.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore = (
  options: ServiceBackendOptions
): Effect.Effect<RemoteStore, InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const service = `throttlekit-server at ${options.target}`
    const client = yield* acquireChannel({
      target: options.target,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      channelOptions: { "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_CAP_MS, ...options.channelOptions }
    })
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

    // The hot path: one `Effect.async` that sends the request (a literal message, not `create`) and
    // answers the decision or the typed error from the call's callback. It carries no span of its own:
    // `Effect.fn`'s span, its stack capture per call and the generator's steps were most of this door's
    // own cost per check (see bench/). Callers that want a span wrap it.
    const check: RemoteStore["check"] = coalesced !== undefined
      ? coalesced.check
      : (policy, key, cost) =>
        unaryWith(
          client,
          checkMethod,
          CoalescedChecks.checkRequest(policy, key, cost),
          callOptions,
          checkResponse,
          (error) => toRateLimiterError(error, { service, policy, operation: "check" })
        )

    // One `Effect.async` for the RPC (a literal request), its answer decoded in one plain loop inside the
    // call's callback (not an Effect per decision). No span of its own, as `check` (callers that want one
    // wrap it): effect's native span keeps the call's outcome in an object V8 may allocate in the old
    // generation, where it outlives the young collections (see RedisBackend's checkMany).
    const checkMany: RemoteStore["checkMany"] = (policy, keys, cost) =>
      unaryWith(
        client,
        RateLimiterRpc.method.checkMany,
        {
          $typeName: "throttlekit.v1.CheckManyRequest",
          policy,
          keys: [...keys],
          cost: cost === 1 ? 1n : BigInt(cost)
        },
        callOptions,
        (response): Effect.Effect<ReadonlyArray<Decision>, RateLimiterError> =>
          decisionsFromWire(response.decisions, keys.length, BACKEND),
        (error) => toRateLimiterError(error, { service, policy, operation: "checkMany" })
      )

    const peek = Effect.fn("ServiceBackend.peek")(
      function*(policy: string, key: string): Effect.fn.Return<Decision, RateLimiterError> {
        const response = yield* retryIdempotent(call(RateLimiterRpc.method.peek, { policy, key }, policy, "peek"))
        return yield* decisionFromWire(response.decision, BACKEND)
      }
    )

    const forecast = Effect.fn("ServiceBackend.forecast")(
      function*(policy: string, key: string, cost: number): Effect.fn.Return<Forecast, RateLimiterError> {
        const response = yield* retryIdempotent(
          call(RateLimiterRpc.method.forecast, { policy, key, cost: BigInt(cost) }, policy, "forecast")
        )
        return yield* forecastFromWire(response.forecast, BACKEND)
      }
    )

    const debit = Effect.fn("ServiceBackend.debit")(
      function*(policy: string, key: string, tokens: number): Effect.fn.Return<Decision, RateLimiterError> {
        const response = yield* call(
          RateLimiterRpc.method.debit,
          { policy, key, tokens: BigInt(tokens) },
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
        acquireOptions: AcquireOptions
      ): Effect.fn.Return<Admission, RateLimiterError> {
        const response = yield* call(
          RateLimiterRpc.method.admit,
          {
            policy,
            key,
            cost: BigInt(acquireOptions.cost),
            hold: hintToWire(acquireOptions.hold),
            value: hintToWire(acquireOptions.value)
          },
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

    // The probe's question, consuming nothing: Peek / Forecast (read-only) on a placeholder key for
    // themselves, a `CheckMany` with no keys for the rest (see the module doc). Answers the failed
    // status, or `undefined` for an answer.
    const ask = (policy: string, operation: Operation): Effect.Effect<GrpcStatusError | undefined> => {
      const question: Effect.Effect<unknown, GrpcStatusError> = operation === "peek"
        ? unary(client, RateLimiterRpc.method.peek, { policy, key: PROBE_KEY }, callOptions)
        : operation === "forecast"
        ? unary(client, RateLimiterRpc.method.forecast, { policy, key: PROBE_KEY, cost: 1n }, callOptions)
        : unary(client, RateLimiterRpc.method.checkMany, { policy, keys: [], cost: 1n }, callOptions)
      return Effect.match(question, { onSuccess: () => undefined, onFailure: (status) => status })
    }

    const probe: RemoteStore["probe"] = (policy, operation) => {
      switch (operation) {
        case "check":
        case "checkMany":
        case "peek":
        case "forecast":
          // NOT_FOUND, or the policy's UNIMPLEMENTED (not a rate limiter; for peek / forecast, also a
          // strategy without them), is the policy's fault. An answer, or any other status, tells nothing;
          // nor does our server's UNIMPLEMENTED of a fair-escrow policy for a check (it serves check).
          return Effect.map(ask(policy, operation), (status) =>
            status !== undefined && (status.code === grpc.status.NOT_FOUND || isUnsupportedByPolicy(status)) &&
              !(operation === "check" && status.details.includes(FAIR_SERVES))
              ? toRateLimiterError(status, { service, policy, operation })
              : undefined)
        case "debit":
        case "admit":
          // An answer to CheckMany: a rate limiter, which serves neither. The policy's UNIMPLEMENTED says
          // "not a rate limiter": then a Peek (read-only) that is answered can only be a meter's (our
          // server serves peek on one), which serves debit and not admit. A Peek refused tells nothing (an
          // admitter, or a meter on the reference server): the blind spot, no answer.
          return Effect.flatMap(ask(policy, operation), (status) =>
            status === undefined
              ? Effect.succeed(new OperationNotSupported({ policy, operation, reason: "a limiter policy" }))
              : status.code === grpc.status.NOT_FOUND
              ? Effect.succeed(toRateLimiterError(status, { service, policy, operation }))
              : isUnsupportedByPolicy(status)
              ? Effect.map(ask(policy, "peek"), (peeked) =>
                peeked === undefined && operation === "admit"
                  ? new OperationNotSupported({ policy, operation, reason: "a meter policy" })
                  : undefined)
              : Effect.succeed(undefined))
        default:
          return Effect.succeed(undefined)
      }
    }

    // Only a rate limiter answers a keyless CheckMany (a fair escrow, a meter, an admitter refuse it).
    const isLimiter: RemoteStore["isLimiter"] = (policy) =>
      Effect.map(ask(policy, "checkMany"), (status) =>
        status === undefined)

    return {
      _tag: "Remote",
      backend: BACKEND,
      check,
      checkMany,
      peek,
      forecast,
      debit,
      acquire,
      leases: { ttlMs: options.leaseTtlMs ?? 2000, release, heartbeat },
      probe,
      isLimiter
    } satisfies RemoteStore
  })

/**
 * Builds the Service door's `RateLimiter` service: the front (`RateLimiter.make`) over `makeStore`.
 * Fails with `InvalidArgument` when the target cannot be parsed; the channel and the admission keeper
 * live in the given scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ServiceBackendOptions
): Effect.Effect<RateLimiterService, InvalidArgument, Scope.Scope> =>
  Effect.flatMap(makeStore(options), (store) => makeFront(store, options))

/**
 * The Service door as a layer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { limit } from "throttlekit-effect"
 * import { ServiceBackend } from "throttlekit-effect/service"
 *
 * // gRPC to a ThrottleKit server (`throttlekit-effect serve` or any `throttlekit.v1` server): the policies
 * // live on the server, and the program is the one written for the Memory door.
 * export const main = limit("api", "user-42").pipe(
 *   Effect.provide(ServiceBackend.layer({ target: "127.0.0.1:50051", deadline: "250 millis" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ServiceBackendOptions): Layer.Layer<RateLimiter, InvalidArgument> =>
  Layer.scoped(RateLimiter, make(options))

/**
 * The Service store as a layer (its channel closed with the layer), for `RateLimiter.layer`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (options: ServiceBackendOptions): Layer.Layer<Store, InvalidArgument> =>
  Layer.scoped(Store, makeStore(options))

/**
 * The Service door configured from `Config`: the options of `layer`, each a `Config` (`Config.succeed`
 * for a fixed value), e.g. `layerConfig({ target: Config.string("THROTTLEKIT_TARGET"), deadline:
 * Config.duration("THROTTLEKIT_DEADLINE") })`. A missing or invalid value fails the layer with Effect's
 * `ConfigError`; then it is built as `layer` builds it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<ServiceBackendOptions>
): Layer.Layer<RateLimiter, EffectConfigError.ConfigError | InvalidArgument> =>
  Layer.scoped(RateLimiter, Effect.flatMap(Config.unwrap(config), make))
