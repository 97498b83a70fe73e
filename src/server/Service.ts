/**
 * How a gRPC service is implemented with Effect: one handler per method of a generated descriptor
 * (an `Effect` for a unary method, a `Stream` or a `PullStream` for a server-streaming one), bound to
 * grpc-js by the server. A failed handler answers its `GrpcStatusError`; a defect answers INTERNAL (and is
 * logged); a call the client cancels (or whose deadline passes) interrupts its handler. A stream writes a
 * chunk at a time and, once grpc-js's buffer for the call is full, waits for it to drain. A request body
 * that is not a valid message answers INVALID_ARGUMENT before any handler runs, and no status carries
 * more than `MAX_DETAILS_BYTES` of details (nothing a caller sent is ever echoed back unbounded).
 *
 * @since 0.1.0
 */
import type { DescMessage, DescMethod, DescService, Message, MessageInitShape, MessageShape } from "@bufbuild/protobuf"
import { create } from "@bufbuild/protobuf"
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2"
import * as grpc from "@grpc/grpc-js"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
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
 * A server stream given as a scoped pull instead of a `Stream`: `open` starts it (its failure is the
 * call's status, before anything is sent) and returns the pull; each run of the pull gives the next
 * messages, fails with `Option.none()` at the end, or with the call's status. Its resources live until the
 * call ends. A `Stream` kept open costs some 20 KB of runtime state and a pass of its channels per
 * element; a pull costs one fiber and its scope, and one step per chunk: for many long-lived, mostly idle
 * streams (the Monitor's Watch).
 *
 * @since 0.2.0
 * @category models
 */
export interface PullStream<O extends DescMessage> {
  readonly _tag: "PullStream"
  readonly open: Effect.Effect<
    Effect.Effect<Chunk.Chunk<MessageInitShape<O>>, Option.Option<GrpcStatusError>>,
    GrpcStatusError,
    Scope.Scope
  >
}

/**
 * A server stream from a scoped pull (see `PullStream`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const pullStream = <O extends DescMessage>(open: PullStream<O>["open"]): PullStream<O> => ({
  _tag: "PullStream",
  open
})

/**
 * The handler of a server-streaming method: a `Stream`, or a `PullStream`. The server ends the stream
 * when it shuts down.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext
) => Stream.Stream<MessageInitShape<O>, GrpcStatusError> | PullStream<O>

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
 * Told of each call answered with an error status, on the failure path only (a success calls nothing):
 * the method as `service/Method` (e.g. `throttlekit.v1.RateLimiter/Check`) and the status code
 * (`CANCELLED` for a unary call the client cancelled, or whose deadline passed, before its answer; a
 * stream the client cancels is not an error answer). Must not throw.
 *
 * @since 0.3.0
 * @category models
 */
export type FailureObserver = (method: string, code: grpc.status) => void

/**
 * A service ready to be served: its descriptor and how to bind its handlers with the server's runner.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServedService {
  /** The generated descriptor; its `typeName` (e.g. "throttlekit.v1.RateLimiter") is the health name. */
  readonly descriptor: DescService
  /**
   * The grpc-js handlers, running on `run`; streams end when `draining` completes; `failed` (if given) is
   * told of every error answer.
   */
  readonly bind: (
    run: Runner,
    draining: Effect.Effect<void>,
    failed?: FailureObserver
  ) => grpc.UntypedServiceImplementation
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

/** What a handler knows about `call`. */
const contextOf = (
  call: grpc.ServerUnaryCall<Decoded, Message> | grpc.ServerWritableStream<Decoded, Message>,
  draining: Effect.Effect<void>
): CallContext => ({
  metadata: call.metadata,
  peer: call.getPeer(),
  draining,
  cancelled: () => call.cancelled
})

/** The observer's name for `method`: `service/Method`. */
const observedName = (method: DescMethod): string => `${method.parent.typeName}/${method.name}`

/** Tells `failed` (if any) of the error answer `status` to `call`, then returns the status. */
const observe = (
  failed: FailureObserver | undefined,
  method: DescMethod,
  call: { readonly cancelled: boolean },
  status: grpc.StatusObject
): grpc.StatusObject => {
  if (failed !== undefined) failed(observedName(method), call.cancelled ? grpc.status.CANCELLED : status.code)
  return status
}

const bindUnary = (
  method: DescMethod,
  handler: ErasedUnary,
  run: Runner,
  draining: Effect.Effect<void>,
  failed: FailureObserver | undefined
) =>
(
  call: grpc.ServerUnaryCall<Decoded, Message>,
  callback: grpc.sendUnaryData<Message>
) => {
  const request = call.request
  if (request instanceof MalformedRequest) return callback(observe(failed, method, call, malformedStatus(request)))
  const fiber = run(
    handler(request, contextOf(call, draining)).pipe(
      Effect.map((init) => create(method.output, init)),
      internalOnDefect(method)
    )
  )
  const forget = interruptOnCancel(call, fiber)
  fiber.addObserver((exit) => {
    forget()
    if (Exit.isSuccess(exit)) callback(null, exit.value)
    else callback(observe(failed, method, call, failureStatus(exit.cause)))
  })
}

/** Waits until the call's write buffer has drained. */
const drained = (call: grpc.ServerWritableStream<Decoded, Message>) =>
  Effect.async<void>((resume) => {
    const onDrain = () => resume(Effect.void)
    call.once("drain", onDrain)
    return Effect.sync(() => call.removeListener("drain", onDrain))
  })

/**
 * Writes a chunk of messages in order, synchronously while grpc-js's buffer has room, waiting for it to
 * drain each time it is full before writing the next: the call buffers at most its high-water mark (16
 * messages) plus one, and the stream is not pulled again until the whole chunk is written. One step per
 * chunk rather than one per message: a message costs grpc-js's write and nothing more.
 */
const writeChunk = (
  call: grpc.ServerWritableStream<Decoded, Message>,
  method: DescMethod,
  chunk: Chunk.Chunk<MessageInitShape<DescMessage>>
): Effect.Effect<void> => {
  let i = 0
  const rest: Effect.Effect<void> = Effect.suspend(() => {
    while (i < chunk.length) {
      if (!call.write(create(method.output, Chunk.unsafeGet(chunk, i++)))) {
        return i < chunk.length ? Effect.zipRight(drained(call), rest) : drained(call)
      }
    }
    return Effect.void
  })
  return rest
}

/** Writes everything a handler's stream or pull gives, in order, until it ends. */
const writeAll = (
  call: grpc.ServerWritableStream<Decoded, Message>,
  method: DescMethod,
  source: Stream.Stream<MessageInitShape<DescMessage>, GrpcStatusError> | PullStream<DescMessage>
): Effect.Effect<void, GrpcStatusError> => {
  if (Stream.StreamTypeId in source) return Stream.runForEachChunk(source, (chunk) => writeChunk(call, method, chunk))
  return Effect.scoped(Effect.flatMap(source.open, (pull) => {
    const loop: Effect.Effect<void, GrpcStatusError> = Effect.matchEffect(pull, {
      onFailure: (end) => Option.isNone(end) ? Effect.void : Effect.fail(end.value),
      onSuccess: (chunk) => Effect.zipRight(writeChunk(call, method, chunk), loop)
    })
    return loop
  }))
}

/**
 * Binds a server-streaming method. When the server begins to shut down, every open stream of the method
 * ends as if it had finished (OK), and a call arriving after that ends at once. One fiber per method waits
 * for that, rather than a race per call (two more fibers per open stream) or `Stream.interruptWhen` (a
 * fiber per element).
 */
const bindStream = (
  method: DescMethod,
  handler: ErasedStream,
  run: Runner,
  draining: Effect.Effect<void>,
  failed: FailureObserver | undefined
) => {
  const open = new Set<Fiber.RuntimeFiber<void, GrpcStatusError>>()
  let shuttingDown = false
  run(Effect.zipRight(
    draining,
    Effect.sync(() => {
      shuttingDown = true
      for (const fiber of open) fiber.unsafeInterruptAsFork(FiberId.none)
    })
  ))
  return (call: grpc.ServerWritableStream<Decoded, Message>) => {
    if (shuttingDown) {
      call.end()
      return
    }
    const request = call.request
    if (request instanceof MalformedRequest) {
      return void call.emit("error", observe(failed, method, call, malformedStatus(request)))
    }
    const fiber = run(
      Effect.suspend(() => writeAll(call, method, handler(request, contextOf(call, draining)))).pipe(
        internalOnDefect(method)
      )
    )
    open.add(fiber)
    const forget = interruptOnCancel(call, fiber)
    fiber.addObserver((exit) => {
      open.delete(fiber)
      forget()
      if (call.cancelled) return
      if (Exit.isSuccess(exit) || (shuttingDown && Exit.isInterrupted(exit))) call.end()
      else call.emit("error", observe(failed, method, call, failureStatus(exit.cause)))
    })
  }
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
  bind: (run, draining, failed) => {
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
        implementation[method.localName] = bindUnary(method, handler as ErasedUnary, run, draining, failed)
      } else if (method.methodKind === "server_streaming") {
        implementation[method.localName] = bindStream(method, handler as ErasedStream, run, draining, failed)
      }
    }
    return implementation
  }
})
