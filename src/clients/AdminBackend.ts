/**
 * The admin client (a client layer, not a door): the `RateLimiterAdmin` service over gRPC, on a
 * throttlekit-effect server's admin door (`throttlekit_effect.admin.v1.RateLimiterAdmin`, proto/admin.proto).
 * The channel is scoped and closed with the layer; every call carries a deadline (1 s by default); the
 * secret, when given, travels as `x-admin-secret` call metadata.
 *
 * Arguments are checked here before anything is sent (the key, then `units` or the duration), so bad input
 * never leaves the process; the server checks the policy (NOT_FOUND → `PolicyNotFound`, UNIMPLEMENTED →
 * `OperationNotSupported`) and again everything else. So over this client a bad argument is reported
 * before an unknown policy (the in-process admin reports the policy first). A refused caller gets
 * `Unauthenticated`; a missed deadline on penalize, reward or block is `OutcomeUnknown` (the server may
 * have applied it), on reset or unblock `ServiceUnavailable` (they are safe to retry).
 *
 * @since 0.3.0
 */
import type * as grpc from "@grpc/grpc-js"
import * as Config from "effect/Config"
import type * as EffectConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { InvalidArgument, type Operation, type RateLimiterError } from "../Errors.js"
import { acquireChannel, secretMetadata } from "../grpc/channel.js"
import { unary } from "../grpc/client.js"
import { decisionFromWire } from "../grpc/convert.js"
import { RateLimiterAdmin as AdminRpc } from "../grpc/generated/admin_pb.js"
import { toRateLimiterError } from "../grpc/status.js"
import {
  blockMillis,
  RateLimiterAdmin,
  type RateLimiterAdminService,
  unitsProblem
} from "../services/RateLimiterAdmin.js"
import * as Validate from "../Validate.js"

/**
 * Options of the admin client.
 *
 * @since 0.3.0
 * @category models
 */
export interface AdminBackendOptions {
  /** The server, as a gRPC target: "host:port", "dns:///host:port", "unix:/path". */
  readonly target: string
  /** The server's admin secret, sent as `x-admin-secret` (needed off loopback, or when the server has one). */
  readonly secret?: Redacted.Redacted<string>
  /** The deadline of each call in ms (default 1000). */
  readonly deadlineMs?: number
  /** Channel credentials (default insecure). */
  readonly credentials?: grpc.ChannelCredentials
  /** Extra grpc-js channel options. */
  readonly channelOptions?: grpc.ChannelOptions
}

const BACKEND = "admin"

const invalid = (argument: string, reason: string) => new InvalidArgument({ argument, reason })

/** The first bad argument of a call (policy name length, key), or `undefined`. */
const keyFault = (policy: string, key: string): InvalidArgument | undefined => {
  const tooLong = Validate.policyNameProblem(policy)
  if (tooLong !== undefined) return invalid("policy", tooLong)
  const keyProblem = Validate.keyProblem(key)
  return keyProblem === undefined ? undefined : invalid("key", keyProblem)
}

/**
 * Builds the admin client over a scoped channel to `options.target`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: AdminBackendOptions
): Effect.Effect<RateLimiterAdminService, InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const service = `throttlekit-effect admin at ${options.target}`
    const client = yield* acquireChannel(options)
    const deadlineMs = options.deadlineMs ?? 1000
    const metadata = secretMetadata("x-admin-secret", options.secret)
    const callOptions = () => ({ deadlineMs, metadata: metadata.clone() })
    const failed = (policy: string, operation: Operation) => (error: Parameters<typeof toRateLimiterError>[0]) =>
      toRateLimiterError(error, { service, policy, operation })

    const reset: RateLimiterAdminService["reset"] = (policy, key) => {
      const fault = keyFault(policy, key)
      if (fault !== undefined) return Effect.fail(fault)
      return unary(client, AdminRpc.method.reset, { policy, key }, callOptions()).pipe(
        Effect.mapError(failed(policy, "reset")),
        Effect.asVoid,
        Effect.withSpan("RateLimiterAdmin.reset")
      )
    }

    const adjust = (operation: "penalize" | "reward") => (policy: string, key: string, units: number) => {
      const fault = keyFault(policy, key)
      if (fault !== undefined) return Effect.fail(fault)
      const problem = unitsProblem(units)
      if (problem !== undefined) return Effect.fail(invalid("units", problem))
      const method = operation === "penalize" ? AdminRpc.method.penalize : AdminRpc.method.reward
      return unary(client, method, { policy, key, units: BigInt(units) }, callOptions()).pipe(
        Effect.mapError((error): RateLimiterError => failed(policy, operation)(error)),
        Effect.flatMap((response) => decisionFromWire(response.decision, BACKEND)),
        Effect.withSpan(`RateLimiterAdmin.${operation}`)
      )
    }

    const block: RateLimiterAdminService["block"] = (policy, key, duration) => {
      const fault = keyFault(policy, key)
      if (fault !== undefined) return Effect.fail(fault)
      const ms = blockMillis(duration)
      if (typeof ms !== "number") return Effect.fail(ms)
      return unary(client, AdminRpc.method.block, { policy, key, durationMs: BigInt(ms) }, callOptions()).pipe(
        Effect.mapError((error): RateLimiterError => failed(policy, "block")(error)),
        Effect.flatMap((response) => decisionFromWire(response.decision, BACKEND)),
        Effect.withSpan("RateLimiterAdmin.block")
      )
    }

    const unblock: RateLimiterAdminService["unblock"] = (policy, key) => {
      const fault = keyFault(policy, key)
      if (fault !== undefined) return Effect.fail(fault)
      return unary(client, AdminRpc.method.unblock, { policy, key }, callOptions()).pipe(
        Effect.mapError((error): RateLimiterError => failed(policy, "unblock")(error)),
        Effect.flatMap((response) => decisionFromWire(response.decision, BACKEND)),
        Effect.withSpan("RateLimiterAdmin.unblock")
      )
    }

    return {
      backend: "service",
      reset,
      penalize: adjust("penalize"),
      reward: adjust("reward"),
      block,
      unblock
    }
  })

/**
 * The admin client as a layer.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { RateLimiterAdmin } from "throttlekit-effect"
 * import { AdminBackend } from "throttlekit-effect/service"
 *
 * export const main = Effect.gen(function*() {
 *   const admin = yield* RateLimiterAdmin.RateLimiterAdmin
 *   yield* admin.block("api", "user-42", "10 minutes") // checks of user-42 are denied for 10 minutes
 *   yield* admin.reward("api", "partner-7", 100) // a partner gets 100 units back
 * }).pipe(Effect.provide(AdminBackend.layer({
 *   target: "127.0.0.1:50051",
 *   secret: Redacted.make("admin-secret") // needed unless the client is on loopback
 * })))
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: AdminBackendOptions): Layer.Layer<RateLimiterAdmin, InvalidArgument> =>
  Layer.scoped(RateLimiterAdmin, make(options))

/**
 * The admin client configured from `Config`: the options of `layer`, each a `Config`, e.g.
 * `layerConfig({ target: Config.string("THROTTLEKIT_TARGET"), secret: Config.redacted("THROTTLEKIT_ADMIN_SECRET") })`.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<AdminBackendOptions>
): Layer.Layer<RateLimiterAdmin, EffectConfigError.ConfigError | InvalidArgument> =>
  Layer.scoped(RateLimiterAdmin, Effect.flatMap(Config.unwrap(config), make))
