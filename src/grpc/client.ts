/**
 * Unary and server-streaming gRPC calls as Effects and Streams over a grpc-js `Client`, typed by the
 * generated method descriptors.
 * Interrupting a call cancels it on the wire; every unary call carries a deadline.
 *
 * @since 0.1.0
 */
import type { DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf"
import { create } from "@bufbuild/protobuf"
import * as grpc from "@grpc/grpc-js"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Deadlines, type Expiring } from "../internal/deadlines.js"
import { callSerializer, deserializer, methodPath, serializer } from "./codec.js"
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
  unaryWith(client, method, create<M["input"]>(method.input, request), options, Effect.succeed, identity)

const identity = <A>(a: A): A => a

/**
 * Calls a unary method with a ready message (a `create(...)` result, or a literal with its `$typeName`
 * and every field) and turns the outcome into the caller's result inside the call's own callback: the
 * response through `onResponse`, a failed status through `onError`. One `Effect.async` per call and no
 * extra step after it, for hot paths. Deadline and cancellation on interruption as `unary`.
 *
 * @since 0.1.0
 * @category calls
 */
export const unaryWith = <M extends UnaryMethod, A, E>(
  client: grpc.Client,
  method: M,
  message: MessageShape<M["input"]>,
  options: CallOptions,
  onResponse: (response: MessageShape<M["output"]>) => Effect.Effect<A, E>,
  onError: (error: GrpcStatusError) => E
): Effect.Effect<A, E> =>
  Effect.async<A, E>((resume) => {
    const call = sendUnary(
      client,
      method,
      message,
      options,
      (response) => resume(onResponse(response)),
      (error) => resume(Effect.fail(onError(error)))
    )
    return call === undefined ? undefined : Effect.sync(() => call.cancel())
  })

/**
 * A unary call in flight, to cancel it (grpc-js's `ClientUnaryCall`, or the direct call of a plain client).
 *
 * @since 0.3.0
 * @category models
 */
export interface UnaryCall {
  /** Cancels the call on the wire (status CANCELLED); nothing once it has ended. */
  readonly cancel: () => void
}

/**
 * The clients whose unary calls may go straight to the channel (see `allowDirectCalls`), each with the
 * deadline queues of its direct calls, one per call bound (a door uses one).
 */
const direct = new WeakMap<grpc.Client, Map<number, Deadlines>>()

/** How many distinct call bounds a client's direct calls share timers for; calls beyond get grpc-js's own. */
const SHARED_BOUNDS = 8

/**
 * Lets `sendUnary` start `client`'s unary calls on its channel directly, without grpc-js's client layer
 * (argument checks, an interceptor chain built per call, an event emitter, a stack trace captured per
 * call): only for a client built without `interceptors`, `interceptor_providers` or a
 * `callInvocationTransformer`, which that layer would apply. `acquireChannel` marks the clients it dials.
 *
 * @since 0.3.0
 * @category calls
 */
export const allowDirectCalls = (client: grpc.Client): void => {
  if (!direct.has(client)) direct.set(client, new Map())
}

/**
 * Sends one unary call outside any fiber and reports its outcome exactly once: the response to
 * `onResponse`, a failed status (or an empty response) to `onError`, from grpc-js's callback. A closed
 * channel, on which grpc-js throws synchronously, is reported as UNAVAILABLE before this returns, and
 * then there is no call. Returns the call, to cancel it.
 *
 * On a client marked by `allowDirectCalls` the call starts on the channel itself, with the outcomes of
 * grpc-js's `makeUnaryRequest` (the same statuses for a second response, no response, a response that
 * does not decode); any other client goes through `makeUnaryRequest`.
 *
 * @since 0.1.0
 * @category calls
 */
export const sendUnary = <M extends UnaryMethod>(
  client: grpc.Client,
  method: M,
  message: MessageShape<M["input"]>,
  options: CallOptions,
  onResponse: (response: MessageShape<M["output"]>) => void,
  onError: (error: GrpcStatusError) => void
): UnaryCall | undefined => {
  const codec = codecOf<M>(method)
  const bounds = direct.get(client)
  if (bounds !== undefined) return sendDirect(client, codec, message, options, bounds, onResponse, onError)
  try {
    return client.makeUnaryRequest(
      codec.path,
      codec.serialize,
      codec.deserialize,
      message,
      // A fresh instance per call: an interceptor given through the channel options may add to it.
      options.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + options.deadlineMs },
      (error, response) => {
        if (error !== null) onError(new GrpcStatusError({ code: error.code, details: error.details }))
        else if (response === undefined) {
          onError(new GrpcStatusError({ code: grpc.status.INTERNAL, details: "empty response" }))
        } else onResponse(response)
      }
    )
  } catch (error) {
    // grpc-js throws synchronously on a closed channel (a call made after its layer was released).
    onError(closedChannel(error))
    return undefined
  }
}

const closedChannel = (error: unknown) =>
  new GrpcStatusError({ code: grpc.status.UNAVAILABLE, details: describe(error) })

/** A call on the channel, as `createCall` returns it. */
type ChannelCall = ReturnType<grpc.ChannelInterface["createCall"]>

/**
 * One direct call: the channel call's listener (what grpc-js's `makeUnaryRequest` and its bottom
 * intercepting call make of the call's events, with the same outcomes), its cancel handle (what
 * `ClientUnaryCall.cancel` does) and its deadline, kept by the client's shared `Deadlines` rather than a
 * grpc-js timer per call. One object with methods, no closures per call.
 */
class DirectCall<M extends UnaryMethod> implements UnaryCall, Expiring {
  private response: MessageShape<M["output"]> | undefined = undefined
  private readError: GrpcStatusError | undefined = undefined
  settled = false
  readonly deadline: number

  constructor(
    private readonly call: ChannelCall,
    private readonly codec: MethodCodec<M>,
    private readonly deadlines: Deadlines | undefined,
    private readonly onResponse: (response: MessageShape<M["output"]>) => void,
    private readonly onError: (error: GrpcStatusError) => void
  ) {
    this.deadline = deadlines === undefined ? Infinity : performance.now() + deadlines.timeoutMs
  }

  onReceiveMetadata(): void {}

  onReceiveMessage(bytes: Buffer): void {
    if (this.response !== undefined) {
      this.call.cancelWithStatus(grpc.status.UNIMPLEMENTED, "Too many responses received")
      return
    }
    try {
      this.response = this.codec.deserialize(bytes)
    } catch (error) {
      this.readError = new GrpcStatusError({
        code: grpc.status.INTERNAL,
        details: `Response message parsing error: ${describe(error)}`
      })
      this.call.cancelWithStatus(this.readError.code, this.readError.details)
    }
  }

  onReceiveStatus(status: grpc.StatusObject): void {
    if (this.settled) return
    this.settled = true
    this.deadlines?.settled()
    if (this.readError !== undefined) this.onError(this.readError)
    else if (status.code !== grpc.status.OK) {
      this.onError(new GrpcStatusError({ code: status.code, details: status.details }))
    } else if (this.response === undefined) {
      this.onError(new GrpcStatusError({ code: grpc.status.UNIMPLEMENTED, details: "No message received" }))
    } else this.onResponse(this.response)
  }

  cancel(): void {
    this.call.cancelWithStatus(grpc.status.CANCELLED, "Cancelled on client")
  }

  /** The shared bound passed: the call ends as grpc-js ends one past its deadline (the server sees it cancelled). */
  expire(timeoutMs: number): void {
    if (!this.settled) {
      this.call.cancelWithStatus(grpc.status.DEADLINE_EXCEEDED, `Deadline exceeded after ${timeoutMs} ms`)
    }
  }
}

/**
 * `sendUnary` on the channel: what grpc-js's `makeUnaryRequest` does for a client without interceptors,
 * in the same order (start, read, send, half-close), minus the layers that serve interceptors and events.
 * The call's deadline is one of the client's shared `Deadlines` (for up to `SHARED_BOUNDS` distinct
 * bounds): grpc-js is given none, so it arms no timer per call and sends no `grpc-timeout` header (the
 * server learns of a call given up on by its cancellation).
 */
const sendDirect = <M extends UnaryMethod>(
  client: grpc.Client,
  codec: MethodCodec<M>,
  message: MessageShape<M["input"]>,
  options: CallOptions,
  bounds: Map<number, Deadlines>,
  onResponse: (response: MessageShape<M["output"]>) => void,
  onError: (error: GrpcStatusError) => void
): UnaryCall | undefined => {
  let deadlines = bounds.get(options.deadlineMs)
  if (deadlines === undefined && bounds.size < SHARED_BOUNDS) {
    deadlines = new Deadlines(options.deadlineMs)
    bounds.set(options.deadlineMs, deadlines)
  }
  let call: ChannelCall
  try {
    call = client.getChannel().createCall(
      codec.path,
      deadlines === undefined ? Date.now() + options.deadlineMs : Infinity,
      undefined,
      null,
      undefined
    )
  } catch (error) {
    onError(closedChannel(error))
    return undefined
  }
  const pending = new DirectCall(call, codec, deadlines, onResponse, onError)
  if (deadlines !== undefined) deadlines.track(pending)
  call.start(options.metadata ?? new grpc.Metadata(), pending)
  call.startRead()
  let bytes: Buffer
  try {
    bytes = codec.serialize(message)
  } catch (error) {
    call.cancelWithStatus(grpc.status.INTERNAL, `Request message serialization failure: ${describe(error)}`)
    return pending
  }
  call.sendMessageWithContext({}, bytes)
  call.halfClose()
  return pending
}

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** A method's path and codecs, built once per method rather than once per call. */
interface MethodCodec<M extends DescMethod> {
  readonly path: string
  readonly serialize: (message: MessageShape<M["input"]>) => Buffer
  readonly deserialize: (bytes: Buffer) => MessageShape<M["output"]>
}

const codecs = new WeakMap<DescMethod, MethodCodec<DescMethod>>()

const codecOf = <M extends DescMethod>(method: M): MethodCodec<M> => {
  const known = codecs.get(method)
  if (known !== undefined) return known as MethodCodec<M>
  const codec: MethodCodec<M> = {
    path: methodPath(method),
    serialize: callSerializer<M["input"]>(method.input),
    deserialize: deserializer<M["output"]>(method.output)
  }
  codecs.set(method, codec as MethodCodec<DescMethod>)
  return codec
}

/**
 * Per-call options of a server stream (no deadline unless given: a watch may run indefinitely).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamOptions {
  readonly deadlineMs?: number
  readonly metadata?: grpc.Metadata
}

/**
 * A server-streaming method of a generated service.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerStreamingMethod = DescMethod & { readonly methodKind: "server_streaming" }

/**
 * Calls a server-streaming method: the messages as a `Stream` that ends when the server ends the call
 * and fails with its status otherwise. Ending the stream early cancels the call.
 *
 * @since 0.1.0
 * @category calls
 */
export const serverStream = <M extends ServerStreamingMethod>(
  client: grpc.Client,
  method: M,
  request: MessageInitShape<M["input"]>,
  options: StreamOptions = {}
): Stream.Stream<MessageShape<M["output"]>, GrpcStatusError> =>
  Stream.async<MessageShape<M["output"]>, GrpcStatusError>((emit) => {
    const call = client.makeServerStreamRequest<MessageShape<M["input"]>, MessageShape<M["output"]>>(
      methodPath(method),
      serializer<M["input"]>(method.input),
      deserializer<M["output"]>(method.output),
      create<M["input"]>(method.input, request),
      options.metadata ?? new grpc.Metadata(),
      options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs }
    )
    call.on("data", (message: MessageShape<M["output"]>) => void emit.single(message))
    call.on(
      "error",
      (error: grpc.ServiceError) => void emit.fail(new GrpcStatusError({ code: error.code, details: error.details }))
    )
    call.on("end", () => void emit.end())
    return Effect.sync(() => call.cancel())
  })
