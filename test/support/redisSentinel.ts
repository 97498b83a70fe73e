/**
 * A real Redis Sentinel setup for tests: one primary, one replica (`--replicaof`), and three sentinels
 * (`redis-server <conf> --sentinel`, each with its own writable conf in its own temp dir) monitoring the
 * primary as `tkmaster` with quorum 2, `down-after-milliseconds` 1000 and a short failover timeout. It
 * is handed out once every sentinel knows the primary, sees the replica in sync and the two other
 * sentinels, so `killPrimary` + `awaitFailover` work the first time. Everything is killed and removed
 * with the scope (or `close`).
 */
import type { Effect } from "effect"
import { Context, Data, Layer, type Scope } from "effect"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import {
  dataNodeSettings,
  isErrorReply,
  LOOPBACK,
  makeTempDir,
  messageOf,
  type NodeSpec,
  pairsToMap,
  pollUntil,
  type ProbeResult,
  ready,
  type RedisNodeHandle,
  replicaSyncTrouble,
  respCommand,
  type RespValue,
  scopedFixture,
  settingsArgs,
  startNodes,
  teardownNodes,
  waiting,
  withFreshPorts
} from "./redisNode.js"
import { MISSING_REDIS_HINT, redisServerAvailable } from "./redisServer.js"

/** The master name the sentinels monitor. */
export const SENTINEL_MASTER_NAME = "tkmaster"

/** A sentinel's address, as Sentinel-aware clients take it. */
export interface SentinelAddress {
  readonly host: string
  readonly port: number
}

/** A finished failover: the dead primary, the replica now reported as master, the time since the kill. */
export interface Failover {
  readonly deadPort: number
  readonly newPrimaryPort: number
  readonly elapsedMs: number
}

/** What can be tuned at start; the defaults suit failover tests on a small, busy machine. */
export interface RedisSentinelOptions {
  /** `sentinel down-after-milliseconds` (1000 ms unless given). */
  readonly downAfterMs?: number
  /** `sentinel failover-timeout` (3000 ms unless given). */
  readonly failoverTimeoutMs?: number
  /** How long the whole start may take (60 s unless given). */
  readonly readyTimeoutMs?: number
}

/** A running Sentinel setup: the sentinels' addresses, the data nodes, queries and fault controls. */
export interface RedisSentinelHandle {
  /** The master name (`tkmaster`). */
  readonly name: string
  /** The three sentinels' addresses. */
  readonly sentinels: Array<SentinelAddress>
  /** The three sentinel processes (to kill or pause one). */
  readonly sentinelNodes: ReadonlyArray<RedisNodeHandle>
  /** The two data nodes, first the one started as primary (roles change with failovers). */
  readonly nodes: ReadonlyArray<RedisNodeHandle>
  /** The data node on `port`; throws when there is none. */
  readonly node: (port: number) => RedisNodeHandle
  /** The primary's port as a running sentinel reports it now (`SENTINEL get-master-addr-by-name`). */
  readonly primaryPort: () => Promise<number>
  /** SIGKILLs the data node the sentinels report as primary; resolves its port. */
  readonly killPrimary: () => Promise<number>
  /**
   * Resolves once every running sentinel reports another data node as master and that node answers
   * `ROLE` as a primary; `elapsedMs` counts from `killPrimary`.
   */
  readonly awaitFailover: (timeoutMs?: number) => Promise<Failover>
  /**
   * Resolves once the setup is whole: every node running, the sentinels agreeing on a primary that says
   * it is one, each seeing the other data node as a replica in sync and the two other sentinels.
   */
  readonly awaitReady: (timeoutMs?: number) => Promise<void>
  /** Kills every process and removes their dirs. */
  readonly close: () => Promise<void>
}

/** Starting or probing the Sentinel setup failed. */
export class RedisSentinelError extends Data.TaggedError("RedisSentinelError")<{ readonly reason: string }> {}

const DEFAULT_READY_TIMEOUT_MS = 60_000
const DEFAULT_FAILOVER_TIMEOUT_MS = 30_000
const SENTINEL_COUNT = 3

// ---------------------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------------------

const dataNodeSpec = (port: number, replicaOf: number | undefined): NodeSpec => {
  const dir = makeTempDir(`tk-sentinel-data-${port}`)
  const logFile = path.join(dir, "redis.log")
  const replication = replicaOf === undefined ? [] : ["--replicaof", LOOPBACK, String(replicaOf)]
  return {
    port,
    dir,
    logFile,
    args: [...settingsArgs(dataNodeSettings(port, dir, logFile)), ...replication]
  }
}

interface SentinelConf {
  readonly primaryPort: number
  readonly downAfterMs: number
  readonly failoverTimeoutMs: number
}

/**
 * Sentinel's internal periods, shortened for tests with `SENTINEL DEBUG` (not kept in the conf, so set
 * after every start): PING every 250 ms instead of 1 s (with `down-after-milliseconds` 1000 equal to the
 * ping period, a new master's first pong after `+switch-master` could come a few ms late and every
 * sentinel would mark it down at once and fail back: seen on this machine); INFO to the data nodes every
 * 1 s instead of 10 s and hellos every 0.5 s instead of 2 s (discovery and a restarted node's
 * reconfiguration take seconds, not tens); TILT only after a 10 s timer stall and for 5 s, not 30 s.
 */
const SENTINEL_DEBUG_PERIODS: Readonly<Record<string, number>> = {
  "ping-period": 250,
  "info-period": 1000,
  "publish-period": 500,
  "tilt-trigger": 10_000,
  "tilt-period": 5000
}

const applyDebugPeriods = async (port: number): Promise<void> => {
  const reply = await respCommand(port, [
    "SENTINEL",
    "DEBUG",
    ...Object.entries(SENTINEL_DEBUG_PERIODS).flatMap(([name, ms]) => [name, String(ms)])
  ])
  if (reply !== "OK") throw new Error(`SENTINEL DEBUG on ${port} answered ${JSON.stringify(reply)}`)
}

/** A sentinel's own conf file (sentinels rewrite it, so it lives in the sentinel's dir). */
const sentinelSpec = (port: number, conf: SentinelConf): NodeSpec => {
  const dir = makeTempDir(`tk-sentinel-${port}`)
  const logFile = path.join(dir, "sentinel.log")
  const confFile = path.join(dir, "sentinel.conf")
  const name = SENTINEL_MASTER_NAME
  writeFileSync(
    confFile,
    [
      `port ${port}`,
      `bind ${LOOPBACK}`,
      "protected-mode no",
      `dir ${dir}`,
      `logfile ${logFile}`,
      `sentinel monitor ${name} ${LOOPBACK} ${conf.primaryPort} 2`,
      `sentinel down-after-milliseconds ${name} ${conf.downAfterMs}`,
      `sentinel failover-timeout ${name} ${conf.failoverTimeoutMs}`,
      `sentinel parallel-syncs ${name} 1`,
      ""
    ].join("\n")
  )
  return { port, dir, logFile, args: [confFile, "--sentinel"], afterStart: applyDebugPeriods }
}

// ---------------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------------

/** The primary's port as the sentinel on `port` reports it. */
const reportedPrimary = async (port: number): Promise<number> => {
  const reply = await respCommand(port, ["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER_NAME])
  const reportedPort = Array.isArray(reply) ? reply[1] : undefined
  if (typeof reportedPort !== "string") throw new Error(`sentinel ${port} answered ${JSON.stringify(reply)}`)
  return Number(reportedPort)
}

/** The entries (`SENTINEL replicas`, `SENTINEL sentinels`) the sentinel on `port` lists, as maps. */
const sentinelList = async (
  port: number,
  what: "replicas" | "sentinels"
): Promise<Array<ReadonlyMap<string, string>>> => {
  const reply = await respCommand(port, ["SENTINEL", what, SENTINEL_MASTER_NAME])
  if (!Array.isArray(reply)) throw new Error(`SENTINEL ${what} on ${port} answered ${JSON.stringify(reply)}`)
  const entries: ReadonlyArray<RespValue> = reply
  return entries.map(pairsToMap)
}

const isDown = (entry: ReadonlyMap<string, string>): boolean =>
  /s_down|o_down|disconnected/.test(entry.get("flags") ?? "")

/** Why the sentinel on `port` does not yet see `replicaPorts` in sync and the other sentinels, or `undefined`. */
const sentinelTrouble = async (port: number, replicaPorts: ReadonlyArray<number>): Promise<string | undefined> => {
  const replicas = await sentinelList(port, "replicas")
  for (const replicaPort of replicaPorts) {
    const entry = replicas.find((candidate) => Number(candidate.get("port")) === replicaPort)
    if (entry === undefined) return `sentinel ${port} does not list replica ${replicaPort}`
    if (isDown(entry)) return `sentinel ${port} sees replica ${replicaPort} as ${entry.get("flags")}`
    if (entry.get("master-link-status") !== "ok") return `sentinel ${port}: replica ${replicaPort} link not ok yet`
  }
  const others = (await sentinelList(port, "sentinels")).filter((entry) => !isDown(entry))
  if (others.length !== SENTINEL_COUNT - 1) return `sentinel ${port} sees ${others.length} other sentinels`
  const quorum = await respCommand(port, ["SENTINEL", "ckquorum", SENTINEL_MASTER_NAME])
  if (isErrorReply(quorum)) return `sentinel ${port}: ${quorum.error}`
  return undefined
}

/** The primary port every running sentinel agrees on, or why they do not (yet). */
const agreedPrimary = async (sentinels: ReadonlyArray<RedisNodeHandle>): Promise<ProbeResult<number>> => {
  const reports = await Promise.all(sentinels.map((sentinel) => reportedPrimary(sentinel.port)))
  const distinct = new Set(reports)
  const [port] = distinct
  if (distinct.size !== 1 || port === undefined) return waiting(`the sentinels report ${reports.join(", ")}`)
  return ready(port)
}

// ---------------------------------------------------------------------------------------------------
// Handle
// ---------------------------------------------------------------------------------------------------

const makeHandle = (
  dataNodes: ReadonlyArray<RedisNodeHandle>,
  sentinelNodes: ReadonlyArray<RedisNodeHandle>
): RedisSentinelHandle => {
  let lastKill: { readonly port: number; readonly at: number } | undefined
  const runningSentinels = () => sentinelNodes.filter((sentinel) => sentinel.state() === "running")

  const node = (port: number): RedisNodeHandle => {
    const found = dataNodes.find((candidate) => candidate.port === port)
    if (found === undefined) throw new Error(`no data node on port ${port}`)
    return found
  }

  const primaryPort = async (): Promise<number> => {
    const errors: Array<string> = []
    for (const sentinel of runningSentinels()) {
      try {
        return await reportedPrimary(sentinel.port)
      } catch (error) {
        errors.push(messageOf(error))
      }
    }
    throw new Error(`no running sentinel reported the primary: ${errors.join("; ") || "none is running"}`)
  }

  const killPrimary = async (): Promise<number> => {
    const port = await primaryPort()
    const at = Date.now()
    await node(port).kill()
    lastKill = { port, at }
    return port
  }

  const probeFailover = async (deadPort: number, killedAt: number): Promise<ProbeResult<Failover>> => {
    const agreed = await agreedPrimary(runningSentinels())
    if (!agreed.done) return agreed
    if (agreed.value === deadPort) return waiting(`the sentinels still report ${deadPort}`)
    const role = await node(agreed.value).role()
    if (role !== "primary") return waiting(`${agreed.value} answers ROLE as ${role}`)
    return ready({ deadPort, newPrimaryPort: agreed.value, elapsedMs: Date.now() - killedAt })
  }

  const awaitFailover = (timeoutMs = DEFAULT_FAILOVER_TIMEOUT_MS): Promise<Failover> => {
    const kill = lastKill
    if (kill === undefined) return Promise.reject(new Error("awaitFailover: call killPrimary first"))
    return pollUntil(`failover away from ${kill.port}`, timeoutMs, () => probeFailover(kill.port, kill.at))
  }

  const probeWhole = async (): Promise<ProbeResult<void>> => {
    const agreed = await agreedPrimary(sentinelNodes)
    if (!agreed.done) return waiting(agreed.why)
    const primary = agreed.value
    const role = await node(primary).role()
    if (role !== "primary") return waiting(`${primary} answers ROLE as ${role}`)
    const replicaPorts = dataNodes.map((each) => each.port).filter((port) => port !== primary)
    for (const replicaPort of replicaPorts) {
      const trouble = await replicaSyncTrouble(replicaPort, primary)
      if (trouble !== undefined) return waiting(trouble)
    }
    for (const sentinel of sentinelNodes) {
      const trouble = await sentinelTrouble(sentinel.port, replicaPorts)
      if (trouble !== undefined) return waiting(trouble)
    }
    return ready(undefined)
  }

  const awaitReady = (timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<void> => {
    const notRunning = [...dataNodes, ...sentinelNodes].filter((each) => each.state() !== "running")
    if (notRunning.length > 0) {
      const ports = notRunning.map((each) => each.port).join(", ")
      return Promise.reject(new Error(`awaitReady: ${ports} not running`))
    }
    return pollUntil(
      "the Sentinel setup whole (primary, replica in sync, sentinels agreeing)",
      timeoutMs,
      probeWhole,
      200
    )
  }

  return {
    name: SENTINEL_MASTER_NAME,
    sentinels: sentinelNodes.map((sentinel) => ({ host: sentinel.host, port: sentinel.port })),
    sentinelNodes,
    nodes: dataNodes,
    node,
    primaryPort,
    killPrimary,
    awaitFailover,
    awaitReady,
    close: () => teardownNodes([...sentinelNodes, ...dataNodes])
  }
}

/** The two data nodes, the replica in sync before they are handed back (so sentinels find it at once). */
const startDataNodes = async (timeoutMs: number): Promise<Array<RedisNodeHandle>> => {
  const nodes = await withFreshPorts(
    2,
    ([primaryPort = 0, replicaPort = 0]) =>
      startNodes([dataNodeSpec(primaryPort, undefined), dataNodeSpec(replicaPort, primaryPort)], "data node")
  )
  const [primaryPort = 0, replicaPort = 0] = nodes.map((each) => each.port)
  try {
    await pollUntil(`replica ${replicaPort} in sync`, timeoutMs, async () => {
      const trouble = await replicaSyncTrouble(replicaPort, primaryPort)
      return trouble === undefined ? ready(undefined) : waiting(trouble)
    })
    return nodes
  } catch (error) {
    await teardownNodes(nodes)
    throw error
  }
}

/** The three sentinels, monitoring the primary of `conf`. */
const startSentinels = (conf: SentinelConf): Promise<Array<RedisNodeHandle>> =>
  withFreshPorts(SENTINEL_COUNT, (ports) => startNodes(ports.map((port) => sentinelSpec(port, conf)), "sentinel"))

/**
 * Starts the primary, its replica and three sentinels, and waits until the setup is whole; on a failure
 * everything started is killed and removed, and the error says what was last seen. Plain async, for
 * vitest hooks; see `RedisSentinel.start` for the scoped Effect.
 */
export const startRedisSentinel = async (options: RedisSentinelOptions = {}): Promise<RedisSentinelHandle> => {
  if (!redisServerAvailable()) throw new Error(MISSING_REDIS_HINT)
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const dataNodes = await startDataNodes(readyTimeoutMs)
  const conf: SentinelConf = {
    primaryPort: dataNodes[0]?.port ?? 0,
    downAfterMs: options.downAfterMs ?? 1000,
    failoverTimeoutMs: options.failoverTimeoutMs ?? 3000
  }
  let sentinelNodes: Array<RedisNodeHandle>
  try {
    sentinelNodes = await startSentinels(conf)
  } catch (error) {
    await teardownNodes(dataNodes)
    throw error
  }
  const handle = makeHandle(dataNodes, sentinelNodes)
  try {
    await handle.awaitReady(readyTimeoutMs)
    return handle
  } catch (error) {
    const logs = sentinelNodes.map((each) => `--- sentinel ${each.port}:\n${each.logTail(5)}`).join("\n")
    await handle.close()
    throw new Error(`Redis Sentinel setup did not come up: ${messageOf(error)}\n${logs}`)
  }
}

/** A Sentinel setup as a scoped Effect: started on acquire, killed and removed when the scope closes. */
export const redisSentinel = (
  options: RedisSentinelOptions = {}
): Effect.Effect<RedisSentinelHandle, RedisSentinelError, Scope.Scope> =>
  scopedFixture(() => startRedisSentinel(options), (reason) => new RedisSentinelError({ reason }))

/** A Sentinel setup as a service, for `layer(...)` suites that share one. */
export class RedisSentinel extends Context.Tag("test/RedisSentinel")<RedisSentinel, RedisSentinelHandle>() {
  /** A fresh setup in the current scope: `const sentinel = yield* RedisSentinel.start()`. */
  static readonly start = redisSentinel
  /** A fresh setup per layer build. */
  static readonly layer: Layer.Layer<RedisSentinel, RedisSentinelError> = Layer.scoped(RedisSentinel, redisSentinel())
}
