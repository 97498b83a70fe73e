/**
 * The client side's gRPC channel helpers, shared by the Service door and the Fleet and Monitor clients:
 * a scoped grpc-js channel to a target, and call metadata carrying a secret.
 *
 * @since 0.2.0
 */
import * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { InvalidArgument } from "../Errors.js"
import { allowDirectCalls } from "./client.js"

/**
 * Where and how to dial: the target ("host:port", "dns:///host:port", "unix:/path"), the channel
 * credentials (default insecure) and extra grpc-js channel options.
 *
 * @since 0.2.0
 * @category models
 */
export interface DialOptions {
  /** The server, as a gRPC target. */
  readonly target: string
  /** Channel credentials (default insecure). */
  readonly credentials?: grpc.ChannelCredentials
  /** Extra grpc-js channel options (default none). */
  readonly channelOptions?: grpc.ChannelOptions
}

/** The client options that grpc-js's client layer applies per call (then its calls cannot skip that layer). */
const PER_CALL_CLIENT_OPTIONS = ["interceptors", "interceptor_providers", "callInvocationTransformer"] as const

/**
 * A grpc-js client for `target` (created lazily: nothing is dialled until the first call), closed with the
 * scope. A target grpc-js cannot parse fails with `InvalidArgument` (argument "target"). Without
 * interceptors or a call invocation transformer in the options, its unary calls skip grpc-js's client
 * layer (`allowDirectCalls`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquireChannel = (options: DialOptions): Effect.Effect<grpc.Client, InvalidArgument, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const channelOptions = options.channelOptions ?? {}
        const client = new grpc.Client(
          options.target,
          options.credentials ?? grpc.credentials.createInsecure(),
          channelOptions
        )
        if (PER_CALL_CLIENT_OPTIONS.every((option) => channelOptions[option] === undefined)) allowDirectCalls(client)
        return client
      },
      catch: (error) =>
        new InvalidArgument({ argument: "target", reason: error instanceof Error ? error.message : String(error) })
    }),
    (client) => Effect.sync(() => client.close())
  )

/**
 * Call metadata carrying `secret` under `header` (empty without a secret). The secret is read out of its
 * `Redacted` only here, to build the header.
 *
 * @since 0.1.0
 * @category utils
 */
export const secretMetadata = (header: string, secret: Redacted.Redacted<string> | undefined): grpc.Metadata => {
  const metadata = new grpc.Metadata()
  if (secret !== undefined) metadata.set(header, Redacted.value(secret))
  return metadata
}
