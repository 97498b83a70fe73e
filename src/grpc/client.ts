/**
 * Unary gRPC calls as Effects over a grpc-js `Client`, typed by the generated method descriptors.
 * Interrupting the Effect cancels the call; every call carries a deadline.
 *
 * @since 0.1.0
 */
import type { DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf"
import { create } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import { deserializer, methodPath, serializer } from "./codec.js"
import { GrpcStatusError } from "./status.js"

/**
 * Per-call options.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions {
  /** How long the call may take, in ms, before it fails with DEADLINE_EXCEEDED. */
  readonly deadlineMs: number
  /** Request metadata (headers). */
  readonly metadata?: grpc.Metadata
}

/**
 * A unary method of a generated service.
 *
 * @since 0.1.0
 * @category models
 */
export type UnaryMethod = DescMethod & { readonly methodKind: "unary" }

/**
 * Calls a unary method. Fails with the call's `GrpcStatusError` (a missed deadline is DEADLINE_EXCEEDED,
 * an unreachable server UNAVAILABLE); interruption cancels the call on the wire.
 *
 * @since 0.1.0
 * @category calls
 */
export const unary = <M extends UnaryMethod>(
  client: grpc.Client,
  method: M,
  request: MessageInitShape<M["input"]>,
  options: CallOptions
): Effect.Effect<MessageShape<M["output"]>, GrpcStatusError> =>
  Effect.async<MessageShape<M["output"]>, GrpcStatusError>((resume) => {
    const call = client.makeUnaryRequest<MessageShape<M["input"]>, MessageShape<M["output"]>>(
      methodPath(method),
      serializer<M["input"]>(method.input),
      deserializer<M["output"]>(method.output),
      create<M["input"]>(method.input, request),
      options.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + options.deadlineMs },
      (error, response) => {
        if (error !== null) {
          resume(Effect.fail(new GrpcStatusError({ code: error.code, details: error.details })))
        } else if (response === undefined) {
          resume(Effect.fail(new GrpcStatusError({ code: grpc.status.INTERNAL, details: "empty response" })))
        } else {
          resume(Effect.succeed(response))
        }
      }
    )
    return Effect.sync(() => call.cancel())
  })
