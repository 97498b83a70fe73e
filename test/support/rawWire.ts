/**
 * Raw gRPC wire helpers for tests that send hand-built or random request bodies past every client-side
 * codec, and watch what the server logs and what it leaves in Redis; and Monitor Watch streams that
 * never read (idle readers, as the Watch fan-out test and the `watch` bench section open them).
 */
import * as grpc from "@grpc/grpc-js"
import { Effect, Logger } from "effect"
import { Redis } from "ioredis"
import * as http2 from "node:http2"

/** A plain grpc-js client to `address` (no TLS), closed when the scope closes. */
export const rawClient = (address: string) =>
  Effect.acquireRelease(
    Effect.sync(() => new grpc.Client(address, grpc.credentials.createInsecure())),
    (client) => Effect.sync(() => client.close())
  )

/** What the server answered to one raw call. */
export interface Answer {
  readonly code: grpc.status
  readonly details: string
  readonly body: Buffer | undefined
  /** The UTF-8 bytes of the error's trailing metadata (keys and values; 0 for a success). */
  readonly metadataBytes: number
}

/** The UTF-8 bytes of `metadata`'s keys and values. */
const sizeOf = (metadata: grpc.Metadata | undefined): number =>
  Object.entries(metadata?.getMap() ?? {}).reduce(
    (sum, [key, value]) =>
      sum + Buffer.byteLength(key) + (typeof value === "string" ? Buffer.byteLength(value) : value.length),
    0
  )

/** Options of one raw call: its deadline (10 s unless given) and its metadata (empty unless given). */
export interface RawCallOptions {
  readonly deadlineMs?: number
  readonly metadata?: grpc.Metadata
}

/** Sends `body` as the request of `path`, bypassing every client-side codec. Interrupting it cancels it. */
export const sendRaw = (client: grpc.Client, path: string, body: Buffer, options: RawCallOptions = {}) =>
  Effect.async<Answer>((resume) => {
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      body,
      options.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + (options.deadlineMs ?? 10_000) },
      (error, response) =>
        resume(Effect.succeed(
          error === null
            ? { code: grpc.status.OK, details: "", body: response, metadataBytes: 0 }
            : { code: error.code, details: error.details, body: undefined, metadataBytes: sizeOf(error.metadata) }
        ))
    )
    return Effect.sync(() => call.cancel())
  })

/**
 * A reader of the whole keyspace of the Redis at `url` (every key with its DUMP, sorted), over an admin
 * connection closed when the scope closes: equal readings mean nothing was written in between.
 */
export const keyspaceReader = (url: string) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => new Redis(url)),
      (client) => Effect.sync(() => client.disconnect())
    ),
    (admin) =>
      Effect.promise(async () => {
        const keys = (await admin.keys("*")).sort()
        const dumps = await Promise.all(keys.map((key) => admin.dumpBuffer(key)))
        return keys.map((key, i) => `${key} ${dumps[i]?.toString("hex")}`).join("\n")
      })
  )

/** A logger that records the message of everything logged at error or fatal level into `errors`. */
export const errorRecorder = (errors: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Error" || logLevel._tag === "Fatal") errors.push(String(message))
    })
  )

/** Idle Watch streams open on one server (see `openIdleWatches`). */
export interface IdleWatches {
  /** How many were opened. */
  readonly opened: number
  /** How many the server has started answering (their response headers arrived, with a first event). */
  readonly started: () => number
  /** How many have ended so far, by gRPC status code (e.g. RESOURCE_EXHAUSTED beyond the server's cap). */
  readonly ended: () => ReadonlyMap<number, number>
  /** Resets every stream and closes every connection. */
  readonly close: () => void
}

/**
 * Opens `streams` Monitor Watch calls to `address` (policy `policy`, "" = every policy) whose client never
 * reads: plain HTTP/2 streams (node:http2, the gRPC framing by hand) left paused, so the client never
 * consumes their data, never grants more flow-control window, and each call's window fills and stays
 * full, as a stuck or hostile reader's would. (A grpc-js client that is not read is not idle: it keeps
 * reading and buffers the messages itself.) They are spread over connections of `perConnection` streams
 * each, since one HTTP/2 connection carries at most 100 concurrent streams to a Node server by default.
 */
export const openIdleWatches = (
  address: string,
  streams: number,
  options: { readonly perConnection?: number; readonly policy?: string } = {}
): IdleWatches => {
  const perConnection = options.perConnection ?? 50
  const sessions: Array<http2.ClientHttp2Session> = []
  const ended = new Map<number, number>()
  let started = 0
  // A gRPC message: no compression, the length, then WatchRequest { policy = 1 } (empty: every policy).
  const name = Buffer.from(options.policy ?? "", "utf8")
  const request = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name])
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(request.length, 1)
  const body = Buffer.concat([prefix, request])
  const end = (code: number) => ended.set(code, (ended.get(code) ?? 0) + 1)
  for (let i = 0; i < streams; i++) {
    if (i % perConnection === 0) {
      const session = http2.connect(`http://${address}`)
      session.on("error", () => undefined)
      sessions.push(session)
    }
    const stream = sessions[sessions.length - 1]!.request({
      ":method": "POST",
      ":path": "/throttlekit.v1.Monitor/Watch",
      "content-type": "application/grpc",
      te: "trailers"
    })
    stream.end(body)
    stream.on("error", () => undefined)
    // A trailers-only answer (a refusal) carries its status in the response headers.
    stream.once("response", (headers) => {
      const status = headers["grpc-status"]
      if (status === undefined) started++
      else end(Number(status))
    })
    stream.once("trailers", (trailers) => end(Number(trailers["grpc-status"] ?? -1)))
  }
  return {
    opened: streams,
    started: () => started,
    ended: () => ended,
    close: () => {
      for (const session of sessions) session.destroy()
    }
  }
}

/** `openIdleWatches` for the life of the scope. */
export const idleWatches = (
  address: string,
  streams: number,
  options: { readonly perConnection?: number; readonly policy?: string } = {}
) =>
  Effect.acquireRelease(
    Effect.sync(() => openIdleWatches(address, streams, options)),
    (watches) => Effect.sync(() => watches.close())
  )
