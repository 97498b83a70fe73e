/**
 * The parts shared by the multi-process Redis fixtures (`redisCluster.ts`, `redisSentinel.ts`): one
 * `redis-server` process in its own temp dir that can be killed, restarted on the same port, paused and
 * resumed; a one-shot RESP client (a fresh loopback connection per command, so a dead or frozen node
 * costs a timeout, never a stuck client); free loopback ports; and a poll loop whose timeout message says
 * what was last seen. Nothing here imports `src/`.
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type Server, Socket } from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { redisServerBin } from "./redisServer.js"

/** The loopback address every fixture process binds and announces. */
export const LOOPBACK = "127.0.0.1"

// ---------------------------------------------------------------------------------------------------
// RESP
// ---------------------------------------------------------------------------------------------------

/** An error reply (`-ERR …`, `-MOVED …`), kept as a value so callers can read redirections. */
export interface RespErrorReply {
  readonly error: string
}

/** One RESP2 reply: simple or bulk string, integer, nil, error, or an array of replies. */
export type RespValue = string | number | null | RespErrorReply | ReadonlyArray<RespValue>

/** True when `value` is an error reply. */
export const isErrorReply = (value: RespValue): value is RespErrorReply =>
  typeof value === "object" && value !== null && !Array.isArray(value) && "error" in value

interface Parsed {
  readonly value: RespValue
  readonly next: number
}

/** The reply starting at `at` in `buffer`, or `undefined` while it is not complete. */
const parseReply = (buffer: Buffer, at: number): Parsed | undefined => {
  const lineEnd = buffer.indexOf("\r\n", at)
  if (lineEnd < 0) return undefined
  const type = String.fromCharCode(buffer[at] ?? 0)
  const line = buffer.toString("utf8", at + 1, lineEnd)
  const after = lineEnd + 2
  switch (type) {
    case "+":
      return { value: line, next: after }
    case "-":
      return { value: { error: line }, next: after }
    case ":":
      return { value: Number(line), next: after }
    case "$": {
      const length = Number(line)
      if (length < 0) return { value: null, next: after }
      if (buffer.length < after + length + 2) return undefined
      return { value: buffer.toString("utf8", after, after + length), next: after + length + 2 }
    }
    case "*":
      return parseArray(buffer, Number(line), after)
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`)
  }
}

const parseArray = (buffer: Buffer, count: number, at: number): Parsed | undefined => {
  if (count < 0) return { value: null, next: at }
  const items: Array<RespValue> = []
  let next = at
  for (let i = 0; i < count; i++) {
    const item = parseReply(buffer, next)
    if (item === undefined) return undefined
    items.push(item.value)
    next = item.next
  }
  return { value: items, next }
}

/** `args` as a RESP array of bulk strings. */
const encodeCommand = (args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")

/**
 * Sends one command to `127.0.0.1:port` on a fresh connection and resolves its reply (an error reply
 * resolves too, as a value). Rejects when the node cannot be reached or does not answer in `timeoutMs`.
 */
export const respCommand = (port: number, args: ReadonlyArray<string>, timeoutMs = 2000): Promise<RespValue> =>
  new Promise((resolve, reject) => {
    const socket = new Socket()
    let received = Buffer.alloc(0)
    const fail = (why: string) => {
      socket.destroy()
      reject(new Error(`${args[0] ?? "command"} to ${LOOPBACK}:${port}: ${why}`))
    }
    socket.setTimeout(timeoutMs, () => fail(`no answer within ${timeoutMs} ms`))
    socket.once("error", (error) => fail(error.message))
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const parsed = parseReply(received, 0)
      if (parsed === undefined) return
      socket.destroy()
      resolve(parsed.value)
    })
    socket.connect(port, LOOPBACK, () => socket.write(encodeCommand(args)))
  })

/** Sends one command and resolves its string reply; an error reply or another type rejects. */
export const respText = async (port: number, args: ReadonlyArray<string>, timeoutMs?: number): Promise<string> => {
  const reply = await respCommand(port, args, timeoutMs)
  if (typeof reply === "string") return reply
  throw new Error(`${args.join(" ")} on ${LOOPBACK}:${port} answered ${JSON.stringify(reply)}`)
}

/** The `field:value` lines of an INFO-style text (`INFO`, `CLUSTER INFO`). */
export const infoFields = (text: string): ReadonlyMap<string, string> =>
  new Map(
    text.split("\r\n").flatMap((line) => {
      const colon = line.indexOf(":")
      return line.startsWith("#") || colon < 0 ? [] : [[line.slice(0, colon), line.slice(colon + 1)] as const]
    })
  )

/** A flat `[field, value, field, value, …]` array reply (`SENTINEL replicas`) as a map. */
export const pairsToMap = (reply: RespValue): ReadonlyMap<string, string> => {
  const map = new Map<string, string>()
  if (!Array.isArray(reply)) return map
  const items: ReadonlyArray<RespValue> = reply
  for (let i = 0; i + 1 < items.length; i += 2) {
    const field = items[i]
    const value = items[i + 1]
    if (typeof field === "string" && typeof value === "string") map.set(field, value)
  }
  return map
}

// ---------------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------------

/** What one probe of `pollUntil` saw: done with a value, or not (yet) and why; `fatal` ends the wait. */
export type ProbeResult<T> =
  | { readonly done: true; readonly value: T }
  | { readonly done: false; readonly why: string; readonly fatal: boolean }

/** A probe that is done. */
export const ready = <T>(value: T): ProbeResult<T> => ({ done: true, value })

/** A probe that is still waiting, with what it saw. */
export const waiting = <T>(why: string): ProbeResult<T> => ({ done: false, why, fatal: false })

/** A probe that saw the wait cannot succeed (a process that exited): `pollUntil` rejects at once. */
export const failed = <T>(why: string): ProbeResult<T> => ({ done: false, why, fatal: true })

class FatalProbe extends Error {}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs `probe` every `intervalMs` until it is done, and resolves its value. A probe that throws counts
 * as still waiting; one that `failed` rejects at once. After `timeoutMs` it rejects with `what` and the
 * last thing the probe saw.
 */
export const pollUntil = async <T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<ProbeResult<T>>,
  intervalMs = 100
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  let lastWhy = "never probed"
  for (;;) {
    try {
      const result = await probe()
      if (result.done) return result.value
      if (result.fatal) throw new FatalProbe(`${what}: ${result.why}`)
      lastWhy = result.why
    } catch (error) {
      if (error instanceof FatalProbe) throw error
      lastWhy = messageOf(error)
    }
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms; last seen: ${lastWhy}`)
    await sleep(intervalMs)
  }
}

// ---------------------------------------------------------------------------------------------------
// Ports and dirs
// ---------------------------------------------------------------------------------------------------

const listenOnFreePort = (): Promise<Server> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, LOOPBACK, () => resolve(server))
  })

const portOf = (server: Server): number => {
  const address = server.address()
  return typeof address === "object" && address !== null ? address.port : 0
}

/** `count` distinct free loopback ports (all held open together while chosen, so none repeats). */
export const freePorts = async (count: number): Promise<Array<number>> => {
  const servers = await Promise.all(Array.from({ length: count }, () => listenOnFreePort()))
  const ports = servers.map(portOf)
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  return ports
}

/** True when `error` says a port was taken by someone else between its choice and its bind. */
const isPortTaken = (error: unknown): boolean => messageOf(error).includes("Address already in use")

/**
 * Runs `attempt` with `count` free ports; when one of them was taken meanwhile (the ports are free when
 * chosen, not reserved), runs it again with fresh ones, up to 3 tries. Other failures reject at once.
 */
export const withFreshPorts = async <T>(count: number, attempt: (ports: Array<number>) => Promise<T>): Promise<T> => {
  for (let tries = 1;; tries++) {
    const ports = await freePorts(count)
    try {
      return await attempt(ports)
    } catch (error) {
      if (tries >= 3 || !isPortTaken(error)) throw error
    }
  }
}

/** A fresh temp dir named after `prefix`. */
export const makeTempDir = (prefix: string): string => mkdtempSync(path.join(tmpdir(), `${prefix}-`))

/** Removes `dir` and everything in it (no error when it is already gone). */
export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true })

// ---------------------------------------------------------------------------------------------------
// One redis-server process
// ---------------------------------------------------------------------------------------------------

/** Where a node's process is: running, frozen by SIGSTOP, or not running. */
export type NodeState = "running" | "paused" | "stopped"

/** What `ROLE` says a node is. */
export type NodeRole = "primary" | "replica" | "sentinel"

/** One `redis-server` process of a fixture, on a fixed loopback port, with controls for fault tests. */
export interface RedisNodeHandle {
  readonly host: string
  readonly port: number
  /** Its own temp dir (config, cluster state and log live there, so a restart finds them). */
  readonly dir: string
  /** Where the process is now. */
  readonly state: () => NodeState
  /** What the node says it is (`ROLE`); rejects when it does not answer. */
  readonly role: () => Promise<NodeRole>
  /** One command to this node (see `respCommand`). */
  readonly command: (args: ReadonlyArray<string>, timeoutMs?: number) => Promise<RespValue>
  /** SIGKILL (a crash: no goodbye to peers or clients), then waits for the exit. */
  readonly kill: () => Promise<void>
  /** Starts it again on the same port and dir, and waits until it answers PING. No-op when running. */
  readonly start: () => Promise<void>
  /** Freezes it (SIGSTOP): connections stay open, nothing is answered. */
  readonly pause: () => void
  /** Thaws a paused node (SIGCONT). */
  readonly resume: () => void
  /** The last lines of its log file, for error messages. */
  readonly logTail: (lines?: number) => string
}

/** How to run one node: its port, its dir, and the `redis-server` arguments. */
export interface NodeSpec {
  readonly port: number
  readonly dir: string
  readonly args: ReadonlyArray<string>
  /** Its log file (inside `dir`), read for error messages. */
  readonly logFile: string
  /** Run after each start once it answers PING (settings that do not survive a restart). */
  readonly afterStart?: (port: number) => Promise<void>
}

/** `redis-server` settings as command-line arguments: `{ port: "7000" }` → `--port 7000`. */
export const settingsArgs = (settings: Readonly<Record<string, string>>): Array<string> =>
  Object.entries(settings).flatMap(([name, value]) => [`--${name}`, value])

/**
 * The settings of every data node (cluster node, Sentinel primary or replica): loopback only, its dir
 * and log file, no persistence, and a full sync that starts at once (diskless sync waits 5 s otherwise).
 */
export const dataNodeSettings = (port: number, dir: string, logFile: string): Record<string, string> => ({
  port: String(port),
  bind: LOOPBACK,
  "protected-mode": "no",
  dir,
  logfile: logFile,
  save: "",
  appendonly: "no",
  "repl-diskless-sync-delay": "0"
})

/** Every fixture child still alive, killed if the test process exits without closing its fixture. */
const liveChildren = new Set<ChildProcess>()
let exitHookInstalled = false

const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL")
  })
}

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

const waitExit = (child: ChildProcess): Promise<void> =>
  hasExited(child) ? Promise.resolve() : new Promise((resolve) => child.once("exit", () => resolve()))

const readTail = (file: string, lines: number): string => {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch {
    return "(no log)"
  }
}

const roleOf = (reply: RespValue): NodeRole => {
  const first = Array.isArray(reply) ? reply[0] : undefined
  if (first === "master") return "primary"
  if (first === "slave") return "replica"
  if (first === "sentinel") return "sentinel"
  throw new Error(`unexpected ROLE reply ${JSON.stringify(reply)}`)
}

/** How long a node may take to answer PING after its spawn. */
const NODE_START_TIMEOUT_MS = 20_000

/** Spawns the node described by `spec` and waits until it answers PING; `kill`/`start` reuse the spec. */
export const startNode = async (spec: NodeSpec): Promise<RedisNodeHandle> => {
  installExitHook()
  let child: ChildProcess | undefined
  let paused = false
  const running = (): boolean => child !== undefined && !hasExited(child)

  const start = async (): Promise<void> => {
    if (running()) return
    const spawned = spawn(redisServerBin(), [...spec.args], { stdio: "ignore" })
    child = spawned
    paused = false
    liveChildren.add(spawned)
    spawned.once("exit", () => liveChildren.delete(spawned))
    spawned.once("error", () => liveChildren.delete(spawned))
    await pollUntil(`redis-server on ${LOOPBACK}:${spec.port} answering PING`, NODE_START_TIMEOUT_MS, async () => {
      if (hasExited(spawned)) return failed(`exited early: ${readTail(spec.logFile, 5)}`)
      const reply = await respCommand(spec.port, ["PING"], 500)
      return reply === "PONG" ? ready(undefined) : waiting(`PING answered ${JSON.stringify(reply)}`)
    }, 20).then(() => spec.afterStart?.(spec.port)).catch((error: unknown) => {
      spawned.kill("SIGKILL")
      throw error
    })
  }

  const kill = async (): Promise<void> => {
    const current = child
    if (current === undefined || hasExited(current)) return
    current.kill("SIGKILL")
    await waitExit(current)
    paused = false
  }

  await start()
  return {
    host: LOOPBACK,
    port: spec.port,
    dir: spec.dir,
    state: () => (!running() ? "stopped" : paused ? "paused" : "running"),
    role: async () => roleOf(await respCommand(spec.port, ["ROLE"])),
    command: (args, timeoutMs) => respCommand(spec.port, args, timeoutMs),
    kill,
    start,
    pause: () => {
      if (!running()) return
      child?.kill("SIGSTOP")
      paused = true
    },
    resume: () => {
      if (!running()) return
      child?.kill("SIGCONT")
      paused = false
    },
    logTail: (lines = 20) => readTail(spec.logFile, lines)
  }
}

/** Starts a node per spec; when one fails, kills those started, removes every dir and rejects. */
export const startNodes = async (specs: ReadonlyArray<NodeSpec>, what: string): Promise<Array<RedisNodeHandle>> => {
  const started = await Promise.allSettled(specs.map((spec) => startNode(spec)))
  const nodes = started.flatMap((result) => result.status === "fulfilled" ? [result.value] : [])
  const failure = started.find((result): result is PromiseRejectedResult => result.status === "rejected")
  if (failure === undefined) return nodes
  await teardownNodes(nodes)
  for (const spec of specs) removeDir(spec.dir)
  throw new Error(`a ${what} did not start: ${messageOf(failure.reason)}`)
}

/** Why the replica on `port` is not (yet) in sync with the primary on `primaryPort`, or `undefined`. */
export const replicaSyncTrouble = async (port: number, primaryPort: number): Promise<string | undefined> => {
  const info = infoFields(await respText(port, ["INFO", "replication"]))
  if (info.get("role") !== "slave") return `${port}: role ${info.get("role")}`
  if (Number(info.get("master_port")) !== primaryPort) return `${port}: replicates ${info.get("master_port")}`
  if (info.get("master_link_status") !== "up") return `${port}: master_link_status ${info.get("master_link_status")}`
  if (info.get("master_sync_in_progress") !== "0") return `${port}: sync in progress`
  return undefined
}

/** Kills every node (paused ones too) and removes their dirs; never rejects. */
export const teardownNodes = async (nodes: ReadonlyArray<RedisNodeHandle>): Promise<void> => {
  await Promise.all(nodes.map((node) => node.kill().catch(() => undefined)))
  for (const node of nodes) removeDir(node.dir)
}

/** The message of a thrown value. */
export const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/**
 * A fixture started by `start` as a scoped Effect: started on acquire (a failure becomes `toError`'s
 * typed error), closed and removed when the scope closes.
 */
export const scopedFixture = <H extends { readonly close: () => Promise<void> }, E>(
  start: () => Promise<H>,
  toError: (reason: string) => E
): Effect.Effect<H, E, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: start, catch: (cause) => toError(messageOf(cause)) }),
    (handle) => Effect.promise(() => handle.close())
  )
