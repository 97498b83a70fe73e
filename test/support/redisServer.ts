/**
 * A private `redis-server` for tests: started on a free loopback port with persistence off, answered
 * PING before it is handed out, stopped with its scope. It can be stopped and started again on the same
 * port (fault tests). `REDIS_URL`, when set, names an external Redis for non-destructive tests.
 */
import { Context, Data, Effect, Layer, type Scope } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { createServer, Socket } from "node:net"

/** The binary to run (override with `REDIS_SERVER_BIN`). */
export const redisServerBin = (): string => process.env["REDIS_SERVER_BIN"] ?? "redis-server"

/** True when the `redis-server` binary can be run on this machine. */
export const redisServerAvailable = (): boolean => {
  const probe = spawnSync(redisServerBin(), ["--version"], { stdio: "ignore" })
  return probe.error === undefined && probe.status === 0
}

/** `url` with `user` (may be empty) and `password` in it, for the tests that a password is never printed. */
export const urlWithPassword = (url: string, user: string, password: string): string => {
  const parsed = new URL(url)
  parsed.username = user
  parsed.password = password
  return parsed.toString()
}

/** The one-line fix printed when `redis-server` is missing. */
export const MISSING_REDIS_HINT = "redis-server not found: install redis-server (apt-get install -y redis-server)"

/** A running private Redis: its address, and controls for fault tests. */
export interface RedisServerHandle {
  readonly port: number
  readonly url: string
  /** True while the process runs. */
  readonly running: () => boolean
  /** Kills the process (SIGKILL: no goodbye to clients, like a crash) and waits for it to exit. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port and waits until it answers PING. */
  readonly start: () => Promise<void>
  /** Freezes the process (SIGSTOP): connections stay open but nothing is answered (a hung server). */
  readonly pause: () => void
  /** Thaws a paused process (SIGCONT). */
  readonly resume: () => void
  /** Stops it for good. */
  readonly close: () => Promise<void>
}

/** Starting or probing the private Redis failed. */
export class RedisServerError extends Data.TaggedError("RedisServerError")<{ readonly reason: string }> {}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** Sends one inline PING and resolves true on `+PONG`. */
const ping = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = new Socket()
    let answer = ""
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once("error", () => done(false))
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1")
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG"))
    })
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"))
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const spawnServer = (port: number): ChildProcess =>
  spawn(redisServerBin(), [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--loglevel",
    "warning"
  ], { stdio: ["ignore", "ignore", "pipe"] })

const waitExit = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/**
 * Starts a private `redis-server` on a free loopback port and waits (up to 10 s) until it answers PING.
 * Plain async, for vitest hooks; see `redisServer` for the scoped Effect.
 */
export const startRedisServer = async (): Promise<RedisServerHandle> => {
  if (!redisServerAvailable()) throw new Error(MISSING_REDIS_HINT)
  const port = await freePort()
  let child: ChildProcess | undefined
  let stderr = ""

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return
    stderr = ""
    const spawned = spawnServer(port)
    child = spawned
    spawned.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (spawned.exitCode !== null || spawned.signalCode !== null) {
        throw new Error(`redis-server on port ${port} exited early: ${stderr.trim()}`)
      }
      if (await ping(port)) return
      await sleep(20)
    }
    spawned.kill("SIGKILL")
    throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${stderr.trim()}`)
  }

  const stop = async (): Promise<void> => {
    const current = child
    if (current === undefined) return
    current.kill("SIGKILL")
    await waitExit(current)
  }

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    stop,
    start,
    pause: () => {
      child?.kill("SIGSTOP")
    },
    resume: () => {
      child?.kill("SIGCONT")
    },
    close: async () => {
      child?.kill("SIGCONT")
      await stop()
    }
  }
}

/** The private Redis as a scoped Effect: started on acquire, killed when the scope closes. */
export const redisServer: Effect.Effect<RedisServerHandle, RedisServerError, Scope.Scope> = Effect
  .acquireRelease(
    Effect.tryPromise({
      try: () => startRedisServer(),
      catch: (cause) => new RedisServerError({ reason: cause instanceof Error ? cause.message : String(cause) })
    }),
    (handle) => Effect.promise(() => handle.close())
  )

/** A private Redis as a service, for `layer(...)` suites. */
export class RedisServer extends Context.Tag("test/RedisServer")<RedisServer, RedisServerHandle>() {
  /** A fresh private server per layer build. */
  static readonly layer: Layer.Layer<RedisServer, RedisServerError> = Layer.scoped(RedisServer, redisServer)
}
