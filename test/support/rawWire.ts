/**
 * Raw gRPC wire helpers for tests that send hand-built or random request bodies past every client-side
 * codec, and watch what the server logs and what it leaves in Redis.
 */
import * as grpc from "@grpc/grpc-js"
import { Effect, Logger } from "effect"
import { Redis } from "ioredis"

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
