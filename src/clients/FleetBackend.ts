/**
 * The Fleet client (a client layer, not a door): the `Fleet` service over gRPC, `Fleet.Reserve` on a
 * ThrottleKit server (ours, or the reference `throttlekit-server`). The channel (`grpc/channel.ts`) is
 * scoped and closed with the layer; every call carries a deadline (1 s by default) and a missed one is
 * `ServiceUnavailable`. The secret, when given, travels as `x-fleet-secret` call metadata and is read
 * out of its `Redacted` only to build that header.
 *
 * A reservation consumes budget, so it is never retried: a lost answer may still have granted.
 *
 * Layers: `layer(options)` and `layerConfig(config)` (the same options, each a `Config`; the secret as
 * `Config.redacted`). There is no `layerFile`: a client holds no policies, the server does.
 *
 * @since 0.1.0
 */
import type * as grpc from "@grpc/grpc-js"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { BackendError, InvalidArgument, type RateLimiterError } from "../Errors.js"
import * as LeasedCredits from "../fleet/LeasedCredits.js"
import { acquireChannel, secretMetadata } from "../grpc/channel.js"
import { unary } from "../grpc/client.js"
import { fromInt64 } from "../grpc/convert.js"
import { Axis, Fleet as FleetRpc, type Lease as WireLease } from "../grpc/generated/throttlekit_pb.js"
import { toRateLimiterError } from "../grpc/status.js"
import { Fleet, type FleetAxis, type FleetService, Lease, type LeasedLimiter } from "../services/Fleet.js"
import * as Validate from "../Validate.js"

/**
 * Options of the Fleet client.
 *
 * @since 0.1.0
 * @category models
 */
export interface FleetBackendOptions {
  /** The server, as a gRPC target: "host:port", "dns:///host:port", "unix:/path". */
  readonly target: string
  /** The server's fleet secret, sent as `x-fleet-secret` (needed off loopback, or when the server has one). */
  readonly secret?: Redacted.Redacted<string>
  /** The deadline of each call in ms (default 1000). */
  readonly deadlineMs?: number
  /** Channel credentials (default insecure; `grpc.credentials.createSsl(...)` for TLS). */
  readonly credentials?: grpc.ChannelCredentials
  /** Extra grpc-js channel options. */
  readonly channelOptions?: grpc.ChannelOptions
}

/**
 * The default per-call deadline, in ms.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_DEADLINE_MS = 1000

const BACKEND = "fleet"

const axisToWire: Record<FleetAxis, Axis> = {
  rate: Axis.RATE,
  concurrency: Axis.CONCURRENCY,
  tokenBudget: Axis.TOKEN_BUDGET
}

const leaseFromWire = (lease: WireLease | undefined): Effect.Effect<Lease, BackendError> =>
  lease === undefined
    ? Effect.fail(new BackendError({ backend: BACKEND, code: "PROTOCOL", detail: "the response has no lease" }))
    : Effect.succeed(
      new Lease({
        capacity: fromInt64(lease.capacity),
        expiryMs: fromInt64(lease.expiryMs),
        refreshIntervalMs: fromInt64(lease.refreshIntervalMs),
        safeCapacity: fromInt64(lease.safeCapacity),
        retryAfterMs: fromInt64(lease.retryAfterMs),
        limit: fromInt64(lease.limit)
      }, true)
    )

const wholeAtLeastOne = (value: number, argument: string) => {
  const problem = Validate.costProblem(value)
  return problem === undefined ? Effect.void : Effect.fail(new InvalidArgument({ argument, reason: problem }))
}

/**
 * Builds the Fleet client over a scoped channel to `options.target`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: FleetBackendOptions): Effect.Effect<FleetService, InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const service = `throttlekit-server at ${options.target}`
    const client = yield* acquireChannel(options)
    const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS
    const metadata = secretMetadata("x-fleet-secret", options.secret)

    const reserve = Effect.fn("Fleet.reserve")(
      function*(
        policy: string,
        reserveOptions: Parameters<FleetService["reserve"]>[1] = {}
      ): Effect.fn.Return<Lease, RateLimiterError> {
        const wants = reserveOptions.wants ?? 1
        yield* wholeAtLeastOne(wants, "wants")
        // A domain is a coordinator key: checked here, since a lone surrogate would reach the server as
        // U+FFFD, silently naming another tenant's budget.
        const domainProblem = reserveOptions.domain === undefined || reserveOptions.domain === ""
          ? undefined
          : Validate.keyProblem(reserveOptions.domain)
        if (domainProblem !== undefined) {
          return yield* Effect.fail(new InvalidArgument({ argument: "domain", reason: domainProblem }))
        }
        const response = yield* unary(client, FleetRpc.method.reserve, {
          policy,
          caller: { domain: reserveOptions.domain ?? "", clientId: reserveOptions.clientId ?? "" },
          wants: BigInt(wants),
          axis: axisToWire[reserveOptions.axis ?? "rate"]
        }, { deadlineMs, metadata: metadata.clone() }).pipe(
          Effect.mapError((error) => toRateLimiterError(error, { service, policy, operation: "reserve" }))
        )
        return yield* leaseFromWire(response.lease)
      }
    )

    const leased: FleetService["leased"] = (policy, leasedOptions) =>
      Effect.gen(function*() {
        yield* wholeAtLeastOne(leasedOptions.batch, "batch")
        const credits = yield* LeasedCredits.make({
          limit: 0,
          batch: leasedOptions.batch,
          windowCoupled: leasedOptions.windowCoupled ?? true,
          name: `fleet lease of ${JSON.stringify(policy)}`,
          reserve: (wants) =>
            Effect.map(
              reserve(policy, {
                wants,
                ...(leasedOptions.domain === undefined ? {} : { domain: leasedOptions.domain }),
                ...(leasedOptions.clientId === undefined ? {} : { clientId: leasedOptions.clientId })
              }),
              (lease) => ({
                granted: lease.capacity,
                expiresAt: lease.expiryMs,
                retryAfterMs: lease.retryAfterMs,
                limit: lease.limit
              })
            )
        })
        const limiter: LeasedLimiter = {
          check: (cost) => credits.check(cost),
          credits: () => credits.credits,
          expiresAt: () => credits.expiresAt
        }
        return limiter
      })

    return { reserve, leased }
  })

/**
 * The Fleet client as a layer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Fleet, FleetBackend } from "throttlekit-effect/fleet"
 *
 * // Lease a share of a `federated:` policy's budget from a server, 5 units at a time, and spend it locally.
 * export const main = Effect.gen(function*() {
 *   const fleet = yield* Fleet
 *   const limiter = yield* fleet.leased("fleet-api", { batch: 5 })
 *   return yield* limiter.check() // answered from the credits in hand; only a refill calls the server
 * }).pipe(Effect.provide(FleetBackend.layer({ target: "127.0.0.1:50051" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: FleetBackendOptions): Layer.Layer<Fleet, InvalidArgument> =>
  Layer.scoped(Fleet, make(options))

/**
 * The Fleet client configured from `Config`: the options of `layer`, each a `Config` (`Config.succeed`
 * for a fixed value), e.g. `layerConfig({ target: Config.string("THROTTLEKIT_TARGET"), secret:
 * Config.redacted("THROTTLEKIT_FLEET_SECRET") })`. A missing or invalid value fails the layer with
 * Effect's `ConfigError`; then it is built as `layer` builds it.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<FleetBackendOptions>
): Layer.Layer<Fleet, EffectConfigError.ConfigError | InvalidArgument> =>
  Layer.scoped(Fleet, Effect.flatMap(Config.unwrap(config), make))
