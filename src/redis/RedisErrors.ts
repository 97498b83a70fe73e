/**
 * How an ioredis failure becomes a typed error: a connection fault, a timeout or a transient server
 * state is `ServiceUnavailable`; a reply error (a script error, a wrong type) is `BackendError`.
 *
 * @since 0.1.0
 */
import { BackendError, ServiceUnavailable } from "../Errors.js"

/** Reply-error codes that mean "the server cannot serve right now", not "the command is wrong". */
const transientCodes = new Set(["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "READONLY"])

const messageOf = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "unknown failure"

/**
 * True when `cause` is a Redis error reply (ioredis `ReplyError`), as opposed to a client-side fault.
 *
 * @since 0.1.0
 * @category utils
 */
export const isReplyError = (cause: unknown): cause is Error => cause instanceof Error && cause.name === "ReplyError"

/**
 * The first word of a reply error (`NOSCRIPT`, `ERR`, `WRONGTYPE`…).
 *
 * @since 0.1.0
 * @category utils
 */
export const replyCode = (message: string): string => {
  const space = message.indexOf(" ")
  return space < 0 ? message : message.slice(0, space)
}

/**
 * Classifies an ioredis failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const classify = (cause: unknown): ServiceUnavailable | BackendError => {
  const message = messageOf(cause)
  if (isReplyError(cause)) {
    const code = replyCode(message)
    if (transientCodes.has(code)) return new ServiceUnavailable({ service: "redis", reason: message, cause })
    return new BackendError({ backend: "redis", code, detail: message, cause })
  }
  return new ServiceUnavailable({ service: "redis", reason: message, cause })
}

/**
 * True when Redis answered NOSCRIPT (its script cache does not hold the SHA-1).
 *
 * @since 0.1.0
 * @category utils
 */
export const isNoScript = (error: ServiceUnavailable | BackendError): boolean =>
  error._tag === "BackendError" && error.code === "NOSCRIPT"

/**
 * True when a cluster node answered with a redirection (MOVED: the slot lives on another node now; ASK:
 * it is moving): the command did not run there, so sending it to the right node cannot apply it twice.
 *
 * @since 0.3.0
 * @category utils
 */
export const isRedirection = (error: ServiceUnavailable | BackendError): boolean =>
  error._tag === "BackendError" && (error.code === "MOVED" || error.code === "ASK")

/**
 * The error for a command that got no answer within the bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const timedOut = (timeoutMs: number, what: string, fenced = false): ServiceUnavailable =>
  new ServiceUnavailable({
    service: "redis",
    reason: `${what}: no answer within ${timeoutMs} ms` + (fenced ? " (fenced: it cannot apply after this error)" : "")
  })

/**
 * The error of a consuming script that reached Redis after its fence (the reply `{-2}`): it applied
 * nothing.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fencedOut = (what: string): ServiceUnavailable =>
  new ServiceUnavailable({ service: "redis", reason: `${what}: reached Redis after its deadline; not applied` })
