/**
 * `GET /api/denials`: the hub's live denials as Server-Sent Events. Each denial is one `denial` event
 * whose data is the `DenialEvent` as JSON (one line: JSON escapes line breaks); a comment line goes out
 * after `heartbeatMs` without a denial, so proxies and the browser see the stream alive; `retry: 2000`
 * tells the browser to reconnect after 2 s when the stream drops.
 *
 * The stream subscribes to the hub before it answers its headers, so every denial after the browser sees
 * the stream open is sent. It reads the hub at its own pace (the Watch feed's pull, capped and bounded as
 * a Watch stream: a reader that falls behind loses the oldest events, counted by the hub) and writes one
 * chunk at a time: when the socket does not take a write, it waits for the socket to drain before it
 * reads more, so it holds at most one chunk. A reader that takes nothing for `stallMs` is disconnected.
 * The stream ends when the client goes, when the hub shuts down, or when the Lens's scope closes.
 *
 * @since 0.3.0
 */
import type * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Http from "node:http"
import { DenialEvent } from "../../monitor/Snapshot.js"
import type { Hub } from "../monitor/Hub.js"

/**
 * Options of a stream.
 *
 * @since 0.3.0
 * @category models
 */
export interface DenialStreamOptions {
  readonly hub: Hub
  /** The policy followed ("" = every policy). */
  readonly policy: string
  /** How long without a denial before a comment line is sent, in ms. */
  readonly heartbeatMs: number
  /** How long a write may wait for the socket to drain before the client is disconnected, in ms. */
  readonly stallMs: number
  /** Headers sent with the answer beside the stream's own. */
  readonly headers: Http.OutgoingHttpHeaders
}

const encodeDenial = Schema.encodeSync(Schema.parseJson(DenialEvent))

/** The SSE text of some denials. */
const eventsOf = (events: Chunk.Chunk<DenialEvent>): string => {
  let text = ""
  for (const event of events) text += `event: denial\ndata: ${encodeDenial(event)}\n\n`
  return text
}

/** The stream is over: the client went, its socket stalled, or the hub shut down. */
const over: Effect.Effect<never, Option.Option<never>> = Effect.fail(Option.none())

/**
 * Writes `text`; when the socket does not take it at once, waits for it to drain (at most `stallMs`).
 * Fails when the client is gone or stalled.
 */
const write = (
  response: Http.ServerResponse,
  text: string,
  stallMs: number
): Effect.Effect<void, Option.Option<never>> =>
  Effect.suspend(() => {
    if (response.destroyed || response.writableEnded) return over
    if (response.write(text)) return Effect.void
    return Effect.async<void, Option.Option<never>>((resume) => {
      const cleanup = () => {
        response.off("drain", onDrain)
        response.off("close", onClose)
      }
      const onDrain = () => {
        cleanup()
        resume(Effect.void)
      }
      const onClose = () => {
        cleanup()
        resume(over)
      }
      response.on("drain", onDrain)
      response.on("close", onClose)
      return Effect.sync(cleanup)
    }).pipe(
      Effect.timeoutFail({ duration: Duration.millis(stallMs), onTimeout: () => Option.none() }),
      Effect.tapError(() => Effect.sync(() => response.destroy()))
    )
  })

/**
 * Serves one stream on `response` until it is over (see the module); then ends the answer.
 *
 * @since 0.3.0
 * @category constructors
 */
export const serve = (response: Http.ServerResponse, options: DenialStreamOptions): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    const pull = yield* options.hub.watchPull(options.policy)
    yield* Effect.sync(() => {
      response.writeHead(200, {
        ...options.headers,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        // Proxies that buffer answers (nginx) pass this one through as it comes.
        "x-accel-buffering": "no"
      })
      response.flushHeaders()
    })
    const heartbeat = Duration.millis(options.heartbeatMs)
    const loop = Effect.gen(function*() {
      yield* write(response, "retry: 2000\n: throttlekit-effect lens: live denials\n\n", options.stallMs)
      while (true) {
        const next = yield* Effect.timeoutOption(pull, heartbeat)
        const text = Option.isSome(next) ? eventsOf(next.value) : ": keep-alive\n\n"
        yield* write(response, text, options.stallMs)
      }
    })
    yield* Effect.catchAll(loop, () => Effect.void)
    yield* Effect.sync(() => {
      if (!response.destroyed && !response.writableEnded) response.end()
    })
  }))
