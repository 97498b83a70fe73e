/**
 * The server's TCP front. It accepts connections itself, instead of letting grpc-js listen, so that a
 * connection is bounded before it costs an HTTP/2 session:
 * - at most `maxConnections` are open at once; one more is closed as soon as it is accepted;
 * - each must finish its handshake — TLS when the server has it, then the 24-byte HTTP/2 client preface —
 *   within `handshakeTimeoutMs` of being accepted, or it is closed (a socket that never speaks, or speaks
 *   something else, costs a file descriptor for that long and nothing more);
 * - a connection that passes is handed to grpc-js (`Server.createConnectionInjector`), which serves it
 *   (and closes it once idle, `grpc.max_connection_idle_ms`).
 *
 * TLS is terminated here by a `tls.Server` that never listens (the same as `http2.createSecureServer`:
 * ALPN `h2`, and with a CA, client certificates required and verified), and the decrypted stream is what
 * grpc-js serves. grpc-js has no handshake timeout and no connection cap of its own; this is the layer
 * where both can be enforced exactly.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { lookup } from "node:dns"
import * as net from "node:net"
import * as tls from "node:tls"
import type { ServerTls } from "./TlsMaterial.js"

/**
 * The bounds on the server's connections.
 *
 * @since 0.2.0
 * @category models
 */
export interface ConnectionLimits {
  /** How long an accepted connection has to finish TLS (if any) and send the HTTP/2 preface, in ms. */
  readonly handshakeTimeoutMs: number
  /** The most connections open at once (handshaking or served). */
  readonly maxConnections: number
}

/**
 * What the listener needs from the server.
 *
 * @since 0.2.0
 * @category models
 */
export interface ListenerOptions {
  readonly limits: ConnectionLimits
  /** TLS to terminate before the preface (insecure without it). */
  readonly tls?: ServerTls | undefined
  /** Logs a warning (connections refused at the cap, accept errors); called at most every 10 s per kind. */
  readonly warn: (message: string) => void
}

/**
 * A listener: bind it to addresses, and close every connection it accepted once the server is done.
 *
 * @since 0.2.0
 * @category models
 */
export interface Listener {
  /**
   * Listens on `host` (every address a name resolves to) and `port` (0: a free one, the same for every
   * address), for the life of the scope, handing each connection that finishes its handshake to `serve`
   * (grpc-js's connection injector): closing the scope stops accepting and closes the connections still
   * in their handshake. Fails with the reason when no address could be bound. Succeeds with the port.
   */
  readonly bind: (
    host: string,
    port: number,
    serve: (connection: net.Socket) => void
  ) => Effect.Effect<number, string, Scope.Scope>
  /** Closes every connection still open, and waits (at most 1 s) for the sockets to be released. */
  readonly closeAll: Effect.Effect<void>
  /** The connections open now (handshaking or served). */
  readonly open: Effect.Effect<number>
}

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1")

const WARN_EVERY_MS = 10_000

/**
 * Waits for the HTTP/2 preface on `socket`, checking each byte as it comes: on the whole preface, pushes
 * back everything read (the session reads it again) and calls `ready`; on any other byte, or the end of
 * the stream, destroys the socket.
 */
const awaitPreface = (socket: net.Socket, ready: () => void): void => {
  let seen: Buffer = Buffer.alloc(0)
  const onEnd = () => socket.destroy()
  const onReadable = () => {
    for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
      const n = Math.min(seen.length, PREFACE.length)
      if (!seen.subarray(0, n).equals(PREFACE.subarray(0, n))) return void socket.destroy()
      if (seen.length >= PREFACE.length) {
        socket.removeListener("readable", onReadable)
        socket.removeListener("end", onEnd)
        socket.unshift(seen)
        return ready()
      }
    }
  }
  socket.on("readable", onReadable)
  socket.once("end", onEnd)
}

/** The TCP 4-tuple of a connection: it names one open connection (a TLS socket reports its socket's). */
const tuple = (socket: net.Socket): string =>
  `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`

/** Every address `host` stands for: itself when it is an IP (brackets removed), else what it resolves to. */
const addressesOf = (host: string): Effect.Effect<ReadonlyArray<string>, string> => {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  if (net.isIP(bare) !== 0) return Effect.succeed([bare])
  return Effect.async<ReadonlyArray<string>, string>((resume) => {
    lookup(bare, { all: true }, (error, found) => {
      if (error !== null) resume(Effect.fail(`cannot resolve ${host}: ${error.code ?? error.message}`))
      else resume(Effect.succeed([...new Set(found.map((a) => a.address))]))
    })
  })
}

/** Starts `server` listening on `address:port`: the bound port, or the error's message. */
const listenOn = (server: net.Server, address: string, port: number) =>
  Effect.async<number, string>((resume) => {
    const onError = (error: Error) => {
      server.removeListener("listening", onListening)
      resume(Effect.fail(error.message))
    }
    const onListening = () => {
      server.removeListener("error", onError)
      resume(Effect.succeed((server.address() as net.AddressInfo).port))
    }
    server.once("error", onError)
    server.once("listening", onListening)
    server.listen({ host: address, port })
  })

/**
 * A listening server, and whether it has closed: after `server.close()` it stops accepting at once but
 * emits "close" only once every connection it accepted has closed.
 */
class Bound {
  private closed: boolean
  constructor(readonly server: net.Server) {
    this.closed = false
    server.once("close", () => {
      this.closed = true
    })
  }

  /** Stops accepting (does not wait for the connections). */
  stop(): void {
    if (this.server.listening) this.server.close()
  }

  /** Completes once the server has closed (`stop` first). */
  released(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.closed) return resume(Effect.void)
      const onClose = () => resume(Effect.void)
      this.server.once("close", onClose)
      return Effect.sync(() => this.server.removeListener("close", onClose))
    })
  }
}

/** A warning logged at most every `WARN_EVERY_MS`, with how many times it happened since the last one. */
const throttled = (warn: (message: string) => void, message: (count: number) => string) => {
  let last = 0
  let count = 0
  return () => {
    count++
    const now = Date.now()
    if (now - last < WARN_EVERY_MS) return
    warn(message(count))
    last = now
    count = 0
  }
}

/**
 * A listener with `options`; nothing is bound until `bind`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: ListenerOptions): Listener => {
  const { handshakeTimeoutMs, maxConnections } = options.limits
  /** Every accepted connection still open. */
  const sockets = new Set<net.Socket>()
  /** The connections still in their handshake, with their deadline timers. */
  const pending = new Map<net.Socket, ReturnType<typeof setTimeout>>()
  /** The raw socket of each connection in its TLS handshake, by 4-tuple. */
  const inTls = new Map<string, net.Socket>()
  const servers: Array<Bound> = []
  let accepting = true

  const refused = throttled(
    options.warn,
    (count) =>
      `connection limit reached (${maxConnections} open): ${count} new connection(s) closed at once ` +
      "(raise --max-connections if these are real clients)"
  )
  const acceptFailed = throttled(options.warn, (count) => `${count} connection(s) could not be accepted`)

  let serve: (connection: net.Socket) => void = (connection) => connection.destroy()

  /** The connection on `socket` finished its handshake: stop its deadline and serve `stream`. */
  const handOver = (socket: net.Socket, stream: net.Socket) => {
    const deadline = pending.get(socket)
    if (deadline === undefined) return void stream.destroy()
    clearTimeout(deadline)
    pending.delete(socket)
    serve(stream)
  }

  // The settings of grpc-js's `ServerCredentials.createSsl`, which this replaces: its cipher list comes
  // from GRPC_SSL_CIPHER_SUITES when set (Node's defaults otherwise).
  const ciphers = process.env["GRPC_SSL_CIPHER_SUITES"]
  const secure = options.tls === undefined ? undefined : tls.createServer({
    cert: options.tls.cert,
    key: options.tls.key,
    ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca, requestCert: true, rejectUnauthorized: true }),
    ...(ciphers === undefined ? {} : { ciphers }),
    ALPNProtocols: ["h2"],
    handshakeTimeout: handshakeTimeoutMs
  })
  if (secure !== undefined) {
    secure.on("secureConnection", (stream: tls.TLSSocket) => {
      const key = tuple(stream)
      const socket = inTls.get(key)
      inTls.delete(key)
      stream.on("error", () => {})
      // HTTP/2 needs ALPN "h2" (as http2.createSecureServer requires it).
      if (socket === undefined || stream.alpnProtocol !== "h2") return void stream.destroy()
      awaitPreface(stream, () => handOver(socket, stream))
    })
    // A failed handshake (a refused client certificate, a timeout, garbage): close it, log nothing.
    secure.on("tlsClientError", (_error, stream) => stream.destroy())
  }

  const accept = (socket: net.Socket) => {
    socket.on("error", () => {})
    if (!accepting || sockets.size >= maxConnections) {
      socket.destroy()
      if (accepting) refused()
      return
    }
    sockets.add(socket)
    pending.set(socket, setTimeout(() => socket.destroy(), handshakeTimeoutMs))
    const key = secure === undefined ? "" : tuple(socket)
    socket.once("close", () => {
      sockets.delete(socket)
      const deadline = pending.get(socket)
      if (deadline !== undefined) clearTimeout(deadline)
      pending.delete(socket)
      if (secure !== undefined) inTls.delete(key)
    })
    if (secure === undefined) {
      awaitPreface(socket, () => handOver(socket, socket))
    } else {
      inTls.set(key, socket)
      secure.emit("connection", socket)
    }
  }

  const stopAccepting = Effect.sync(() => {
    accepting = false
    for (const bound of servers) bound.stop()
    for (const socket of pending.keys()) socket.destroy()
  })

  const bind = (
    host: string,
    port: number,
    serveWith: (connection: net.Socket) => void
  ): Effect.Effect<number, string, Scope.Scope> =>
    Effect.gen(function*() {
      serve = serveWith
      const addresses = yield* addressesOf(host)
      yield* Effect.addFinalizer(() => stopAccepting)
      let bound = port
      const failures: Array<string> = []
      for (const address of addresses) {
        const server = net.createServer({ noDelay: true }, accept)
        const result = yield* Effect.either(listenOn(server, address, bound))
        if (result._tag === "Left") {
          failures.push(result.left)
          continue
        }
        // Accept errors (EMFILE, …) come as server errors; without a listener they would end the process.
        server.on("error", acceptFailed)
        servers.push(new Bound(server))
        bound = result.right
      }
      if (servers.length === 0) {
        return yield* Effect.fail(failures.length === 0 ? `${host} resolves to no address` : failures.join("; "))
      }
      return bound
    })

  const closeAll = Effect.suspend(() => {
    accepting = false
    for (const bound of servers) bound.stop()
    for (const socket of sockets) socket.destroy()
    return Effect.forEach(servers, (bound) => bound.released(), { discard: true }).pipe(
      Effect.timeoutOption("1 second"),
      Effect.asVoid
    )
  })

  return { bind, closeAll, open: Effect.sync(() => sockets.size) }
}
