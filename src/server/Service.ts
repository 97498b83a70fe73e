/**
 * How a gRPC service is implemented with Effect: one handler per method of a generated descriptor
 * (an `Effect` for a unary method, a `Stream` for a server-streaming one), bound to grpc-js by the server.
 * A failed handler answers its `GrpcStatusError`; a defect answers INTERNAL (and is logged); a call the
 * client cancels (or whose deadline passes) interrupts its handler. A request body that is not a valid
 * message answers INVALID_ARGUMENT before any handler runs, and no status carries more than
 * `MAX_DETAILS_BYTES` of details (nothing a caller sent is ever echoed back unbounded).
 *
 * @since 0.1.0
 */
import type { DescMessage, DescMethod, DescService, Message, MessageInitShape, MessageShape } from "@bufbuild/protobuf"
import { create } from "@bufbuild/protobuf"
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2"
import * as grpc from "@grpc/grpc-js"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { truncateUtf8 } from "../Errors.js"
import { MalformedRequest, methodPath } from "../grpc/codec.js"
import { type GrpcStatusError, MAX_DETAILS_BYTES, statusError } from "../grpc/status.js"

/**
 * What a handler knows about its call.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallContext {
  /** The request metadata (headers). */
  readonly metadata: grpc.Metadata
  /** The peer address as grpc-js reports it, e.g. "127.0.0.1:53412" or "ipv6:[::1]:53412". */
  readonly peer: string
  /** Completes when the server begins to shut down. */
  readonly draining: Effect.Effect<void>
  /** True once the client has cancelled the call (or its deadline passed): no answer will reach it. */
  readonly cancelled: () => boolean
}

/**
 * The handler of a unary method.
 *
 * @since 0.1.0
 * @category models
 */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext
) => Effect.Effect<MessageInitShape<O>, GrpcStatusError>

/**
 * The handler of a server-streaming method. The server ends the stream when it shuts down.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext
) => Stream.Stream<MessageInitShape<O>, GrpcStatusError>

/**
 * One handler per method of a generated service, typed by its request and response messages.
 *
 * @since 0.1.0
 * @category models
 */
export type Handlers<M extends GenServiceMethods> = {
  readonly [K in keyof M]: M[K]["methodKind"] extends "unary" ? UnaryHandler<M[K]["input"], M[K]["output"]>
    : M[K]["methodKind"] extends "server_streaming" ? StreamHandler<M[K]["input"], M[K]["output"]>
    : never
}

/**
 * Runs a handler's Effect as a fiber of the server (forked into the server's fiber set).
 *
 * @since 0.1.0
 * @category models
 */
export type Runner = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

/**
 * A service ready to be served: its descriptor and how to bind its handlers with the server's runner.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServedService {
  /** The generated descriptor; its `typeName` (e.g. "throttlekit.v1.RateLimiter") is the health name. */
  readonly descriptor: DescService
  /** The grpc-js handlers, running on `run`; streams end when `draining` completes. */
  readonly bind: (run: Runner, draining: Effect.Effect<void>) => grpc.UntypedServiceImplementation
}

type ErasedUnary = UnaryHandler<DescMessage, DescMessage>
type ErasedStream = StreamHandler<DescMessage, DescMessage>

const internalOnDefect = (method: DescMethod) => <A>(effect: Effect.Effect<A, GrpcStatusError>) =>
  effect.pipe(
    Effect.catchAllDefect((defect) =>
      Effect.zipRight(
        Effect.logError("gRPC handler failed unexpectedly").pipe(
          Effect.annotateLogs({ rpc: methodPath(method), defect: Cause.pretty(Cause.die(defect)) })
        ),
        Effect.fail(statusError(grpc.status.INTERNAL, "internal error"))
      )
    ),
    Effect.withSpan(`${method.parent.typeName}/${method.name}`, { kind: "server" })
  )

/** The status object sent for `error`, its details bounded. */
const statusObject = (error: GrpcStatusError): grpc.StatusObject => ({
  code: error.code,
  details: truncateUtf8(error.details, MAX_DETAILS_BYTES),
  metadata: new grpc.Metadata()
})

/** The status to answer for a handler that ended without a value. */
const failureStatus = (cause: Cause.Cause<GrpcStatusError>): grpc.StatusObject => {
  const failure = Cause.failureOption(cause)
  return statusObject(
    Option.isSome(failure) ? failure.value : statusError(grpc.status.UNAVAILABLE, "the server is shutting down")
  )
}

/** The status to answer for a request that did not decode. */
const malformedStatus = (request: MalformedRequest): grpc.StatusObject =>
  statusObject(statusError(grpc.status.INVALID_ARGUMENT, `invalid request: ${request.reason}`))

/** A call's request as the server decoded it (`requestDecoder`): a message, or what was wrong with it. */
type Decoded = Message | MalformedRequest

/** Interrupts `fiber` when the call is cancelled by the client or its deadline passes. */
const interruptOnCancel = (
  call: grpc.ServerUnaryCall<Decoded, Message> | grpc.ServerWritableStream<Decoded, Message>,
  fiber: Fiber.RuntimeFiber<unknown, unknown>
) => {
  const onCancelled = () => fiber.unsafeInterruptAsFork(FiberId.none)
  call.once("cancelled", onCancelled)
  return () => call.removeListener("cancelled", onCancelled)
}

const bindUnary = (method: DescMethod, handler: ErasedUnary, run: Runner, draining: Effect.Effect<void>) =>
(
  call: grpc.ServerUnaryCall<Decoded, Message>,
  callback: grpc.sendUnaryData<Message>
) => {
  const request = call.request
  if (request instanceof MalformedRequest) return callback(malformedStatus(request))
  const context: CallContext = {
    metadata: call.metadata,
    peer: call.getPeer(),
    draining,
    cancelled: () => call.cancelled
  }
  const fiber = run(
    handler(request, context).pipe(
      Effect.map((init) => create(method.output, init)),
      internalOnDefect(method)
    )
  )
  const forget = interruptOnCancel(call, fiber)
  fiber.addObserver((exit) => {
    forget()
    if (Exit.isSuccess(exit)) callback(null, exit.value)
    else callback(failureStatus(exit.cause))
  })
}

/** Writes one message, waiting for the stream to drain when its buffer is full. */
const write = (call: grpc.ServerWritableStream<Decoded, Message>, message: Message) =>
  Effect.async<void>((resume) => {
    if (call.write(message)) return resume(Effect.void)
    const onDrain = () => resume(Effect.void)
    call.once("drain", onDrain)
    return Effect.sync(() => call.removeListener("drain", onDrain))
  })

const bindStream = (method: DescMethod, handler: ErasedStream, run: Runner, draining: Effect.Effect<void>) =>
(
  call: grpc.ServerWritableStream<Decoded, Message>
) => {
  const request = call.request
  if (request instanceof MalformedRequest) return void call.emit("error", malformedStatus(request))
  const context: CallContext = {
    metadata: call.metadata,
    peer: call.getPeer(),
    draining,
    cancelled: () => call.cancelled
  }
  const fiber = run(
    handler(request, context).pipe(
      Stream.interruptWhen(draining),
      Stream.runForEach((init) => write(call, create(method.output, init))),
      internalOnDefect(method)
    )
  )
  const forget = interruptOnCancel(call, fiber)
  fiber.addObserver((exit) => {
    forget()
    if (call.cancelled) return
    if (Exit.isSuccess(exit)) call.end()
    else call.emit("error", failureStatus(exit.cause))
  })
}

/**
 * Implements a generated service with Effect handlers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const implement = <M extends GenServiceMethods>(
  descriptor: GenService<M>,
  handlers: Handlers<M>
): ServedService => ({
  descriptor: descriptor as DescService,
  bind: (run, draining) => {
    // The mapped `Handlers` type is indexed by local name; erase it once here, dispatching on the kind.
    const byName: Record<string, ErasedUnary | ErasedStream> = handlers as unknown as Record<
      string,
      ErasedUnary | ErasedStream
    >
    const implementation: grpc.UntypedServiceImplementation = {}
    for (const method of (descriptor as DescService).methods) {
      const handler = byName[method.localName]
      if (handler === undefined) continue
      if (method.methodKind === "unary") {
        implementation[method.localName] = bindUnary(method, handler as ErasedUnary, run, draining)
      } else if (method.methodKind === "server_streaming") {
        implementation[method.localName] = bindStream(method, handler as ErasedStream, run, draining)
      }
    }
    return implementation
  }
})
