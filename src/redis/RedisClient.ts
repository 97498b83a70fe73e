/**
 * The ioredis client of a Redis backend, as a scoped resource. A client we create is configured so that a
 * consuming script is never applied twice and no call waits for a connection that is not there:
 * no offline queue (a command while disconnected fails at once), no automatic resend of commands that
 * were in flight when the connection dropped, and no per-request retries. Calls are bounded by the
 * script runner (one timer for all calls in flight), not by ioredis' `commandTimeout`, which arms a timer
 * per command. ioredis keeps reconnecting in the background, so the backend recovers by itself when Redis
 * comes back.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import type { BackendError, ServiceUnavailable } from "../Errors.js"
import { classify, timedOut } from "./RedisErrors.js"

/**
 * How to reach Redis: a URL (`redis://host:port/db`), ioredis options, or an existing client (which
 * stays yours: it is neither configured nor closed by the backend).
 *
 * @since 0.1.0
 * @category models
 */
export type RedisConnection = string | RedisOptions | { readonly client: Redis }

/**
 * The default bound on every Redis call, in ms.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_TIMEOUT_MS = 1000

/**
 * The options forced on a client the backend creates (see the module doc).
 *
 * @since 0.1.0
 * @category utils
 */
export const safeOptions: RedisOptions = {
  lazyConnect: true,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0
}

/** Defaults a caller may override: how fast to reconnect and how long a connect attempt may take. */
const defaultOptions = (timeoutMs: number): RedisOptions => ({
  connectTimeout: Math.max(timeoutMs, 1000),
  retryStrategy: (attempt: number) => Math.min(attempt * 50, 1000)
})

/** Timeouts run on the real clock, so a `TestClock` never stalls a bound. */
const liveClock = Clock.make()

const closeClient = (client: Redis) =>
  Effect.tryPromise(() => client.quit()).pipe(
    Effect.timeoutOption(1000),
    Effect.withClock(liveClock),
    Effect.ignore,
    Effect.ensuring(Effect.sync(() => client.disconnect()))
  )

const connect = (client: Redis, timeoutMs: number): Effect.Effect<void, ServiceUnavailable | BackendError> =>
  Effect.tryPromise({ try: () => client.connect(), catch: classify }).pipe(
    Effect.timeoutFail({ duration: Math.max(timeoutMs, 1000), onTimeout: () => timedOut(timeoutMs, "connect") }),
    Effect.withClock(liveClock)
  )

/**
 * Acquires the client: creates and connects ours (closed with the scope; failing with
 * `ServiceUnavailable` when Redis cannot be reached within the bound, `BackendError` when it refuses the
 * connection, e.g. a wrong password), or adopts the caller's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquireClient = (
  connection: RedisConnection,
  timeoutMs: number
): Effect.Effect<Redis, ServiceUnavailable | BackendError, Scope.Scope> => {
  if (typeof connection === "object" && "client" in connection) {
    const client = connection.client
    const unsafe = client.options.autoResendUnfulfilledCommands !== false || client.options.enableOfflineQueue !== false
    return Effect.as(
      unsafe
        ? Effect.logWarning(
          "RedisBackend: the given ioredis client may resend or queue commands while disconnected; " +
            "a consuming check could then be applied after its call failed or timed out. " +
            "Create it with enableOfflineQueue: false, autoResendUnfulfilledCommands: false."
        )
        : Effect.void,
      client
    )
  }
  return Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        typeof connection === "string"
          ? new Redis(connection, { ...defaultOptions(timeoutMs), ...safeOptions })
          : new Redis({ ...defaultOptions(timeoutMs), ...connection, ...safeOptions })
      ),
      closeClient
    )
    // Connection errors surface on each call as ServiceUnavailable; without a listener ioredis would
    // print every reconnect failure.
    client.on("error", () => {})
    yield* connect(client, timeoutMs)
    return client
  })
}
