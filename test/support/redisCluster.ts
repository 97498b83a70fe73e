/**
 * A real Redis Cluster for tests: six `redis-server --cluster-enabled yes` processes (three primaries,
 * three replicas) on free loopback ports, each in its own temp dir, joined with `redis-cli --cluster
 * create`, and handed out only once every node says `cluster_state:ok`, all 16384 slots are assigned and
 * every primary has a replica in sync. A replica is always eligible (`cluster-replica-validity-factor 0`).
 * The node timeout is 15 s by default, so a node that a busy machine stalls for a second is not flagged
 * failing in the middle of a test that counts round trips or expects every call answered. Fault tests ask
 * for the short one (`FAULT_NODE_TIMEOUT_MS`, `RedisCluster.faultLayer`), so `killPrimary` (or
 * `pausePrimary`) + `awaitPromotion` take a few seconds.
 * Everything is killed and removed with the scope (or `close`).
 */
import type { Effect } from "effect"
import { Context, Data, Layer, type Scope } from "effect"
import { execFile, spawnSync } from "node:child_process"
import * as path from "node:path"
import {
  dataNodeSettings,
  infoFields,
  isErrorReply,
  LOOPBACK,
  makeTempDir,
  messageOf,
  type NodeSpec,
  pollUntil,
  type ProbeResult,
  ready,
  type RedisNodeHandle,
  replicaSyncTrouble,
  respCommand,
  respText,
  type RespValue,
  scopedFixture,
  settingsArgs,
  startNodes,
  teardownNodes,
  waiting,
  withFreshPorts
} from "./redisNode.js"
import { MISSING_REDIS_HINT, redisServerAvailable } from "./redisServer.js"

/** The `redis-cli` binary (override with `REDIS_CLI_BIN`). */
export const redisCliBin = (): string => process.env["REDIS_CLI_BIN"] ?? "redis-cli"

/** True when `redis-cli` can be run on this machine. */
export const redisCliAvailable = (): boolean => {
  const probe = spawnSync(redisCliBin(), ["--version"], { stdio: "ignore" })
  return probe.error === undefined && probe.status === 0
}

/** The one-line fix printed when `redis-cli` is missing. */
export const MISSING_REDIS_CLI_HINT = "redis-cli not found: install redis-tools (apt-get install -y redis-tools)"

/** The number of hash slots of a Redis Cluster. */
export const SLOT_COUNT = 16384

/** An inclusive range of hash slots. */
export type SlotRange = readonly [first: number, last: number]

/** A node address as cluster clients take it (ioredis `Cluster` seeds, for one). */
export interface ClusterSeed {
  readonly host: string
  readonly port: number
}

/** A primary as one live node sees it: its port and id, the slots it serves, its replicas' ports. */
export interface ClusterPrimary {
  readonly port: number
  readonly id: string
  readonly slots: ReadonlyArray<SlotRange>
  readonly replicas: ReadonlyArray<number>
  /** Flagged `fail` or `fail?` by the node asked (it still holds its slots until a replica takes over). */
  readonly failing: boolean
}

/** A finished failover: the downed primary, the replica that took its slots, the time since the kill or pause. */
export interface Promotion {
  readonly deadPort: number
  readonly newPrimaryPort: number
  readonly elapsedMs: number
}

/** `cluster-node-timeout` of a cluster that no stall of a busy machine makes fail over. */
export const STEADY_NODE_TIMEOUT_MS = 15_000

/** `cluster-node-timeout` of a cluster for fault tests: a stopped node is flagged, and replaced, in seconds. */
export const FAULT_NODE_TIMEOUT_MS = 1000

/** What can be tuned at start. */
export interface RedisClusterOptions {
  /** `cluster-node-timeout` (`STEADY_NODE_TIMEOUT_MS` unless given; fault tests give `FAULT_NODE_TIMEOUT_MS`). */
  readonly nodeTimeoutMs?: number
  /** How long the whole start may take, joining and first sync included (60 s unless given). */
  readonly readyTimeoutMs?: number
}

/** A running cluster: its addresses, its nodes, queries of its topology, and controls for fault tests. */
export interface RedisClusterHandle {
  /** Every node's address (all six), to seed a cluster client. */
  readonly seeds: Array<ClusterSeed>
  /** The six nodes, in port order of start (not by role: roles change with failovers). */
  readonly nodes: ReadonlyArray<RedisNodeHandle>
  /** The node on `port`; throws when there is none. */
  readonly node: (port: number) => RedisNodeHandle
  /** The primaries with their slots and replicas, as a running node sees them now. */
  readonly primaries: () => Promise<ReadonlyArray<ClusterPrimary>>
  /** The port of the primary serving `slot`, as a running node sees it now. */
  readonly primaryForSlot: (slot: number) => Promise<number>
  /** One command sent to `viaPort` (a running node unless given), following `MOVED` redirections. */
  readonly command: (args: ReadonlyArray<string>, viaPort?: number) => Promise<RespValue>
  /** SIGKILLs the primary on `port` after noting its slots and replicas (for `awaitPromotion`). */
  readonly killPrimary: (port: number) => Promise<void>
  /** SIGSTOPs the primary on `port` (a hung primary) after noting its slots and replicas; `resume` thaws it. */
  readonly pausePrimary: (port: number) => Promise<void>
  /**
   * Resolves once a replica of the primary killed or paused on `port` serves all its slots, answers
   * `ROLE` as a primary, and every running node says `cluster_state:ok` and agrees; `elapsedMs` counts
   * from the kill or pause.
   */
  readonly awaitPromotion: (port: number, timeoutMs?: number) => Promise<Promotion>
  /**
   * Resolves once the cluster is whole again: all six nodes running and `cluster_state:ok`, every slot
   * served, no node flagged failing, the same slot map everywhere, every primary with a replica in sync.
   */
  readonly awaitReady: (timeoutMs?: number) => Promise<void>
  /** FLUSHALL on every primary (replicas follow asynchronously). */
  readonly flushAll: () => Promise<void>
  /** Kills every node and removes their dirs. */
  readonly close: () => Promise<void>
}

/** Starting or probing the cluster failed. */
export class RedisClusterError extends Data.TaggedError("RedisClusterError")<{ readonly reason: string }> {}

// ---------------------------------------------------------------------------------------------------
// Key slots
// ---------------------------------------------------------------------------------------------------

const crc16 = (bytes: Uint8Array): number => {
  let crc = 0
  for (const byte of bytes) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff
  }
  return crc
}

/** The hash slot of `key` (CRC16 of the key, or of its `{hash tag}` when it has a non-empty one). */
export const keySlot = (key: string): number => {
  const open = key.indexOf("{")
  const close = open < 0 ? -1 : key.indexOf("}", open + 1)
  const hashed = close > open + 1 ? key.slice(open + 1, close) : key
  return crc16(Buffer.from(hashed, "utf8")) % SLOT_COUNT
}

/** True when `slot` lies in one of `ranges`. */
export const slotIn = (slot: number, ranges: ReadonlyArray<SlotRange>): boolean =>
  ranges.some(([first, last]) => slot >= first && slot <= last)

/** The first key `${prefix}0`, `${prefix}1`, … whose slot lies in `ranges`. */
export const keyInSlots = (prefix: string, ranges: ReadonlyArray<SlotRange>): string => {
  for (let i = 0; i < 100_000; i++) {
    const key = `${prefix}${i}`
    if (slotIn(keySlot(key), ranges)) return key
  }
  throw new Error(`no key ${prefix}N hashes into ${JSON.stringify(ranges)}`)
}

// ---------------------------------------------------------------------------------------------------
// CLUSTER NODES
// ---------------------------------------------------------------------------------------------------

/** One line of `CLUSTER NODES`. */
interface NodeEntry {
  readonly id: string
  readonly port: number
  readonly flags: ReadonlySet<string>
  readonly primaryId: string | undefined
  readonly linkState: string
  readonly slots: ReadonlyArray<SlotRange>
}

/** `0-5460` or `5461` as a range; `[slot->-id]` (migration in progress) is not a served slot. */
const parseSlotField = (field: string): Array<SlotRange> => {
  if (field.startsWith("[")) return []
  const [first, last = first] = field.split("-")
  return [[Number(first), Number(last)]]
}

/** `127.0.0.1:7000@17000[,hostname]` → 7000. */
const portOfAddress = (address: string): number => Number(address.split("@")[0]?.split(":").pop())

const parseNodeLine = (line: string): NodeEntry => {
  const [id = "", address = "", flags = "", primary = "-", , , , linkState = "", ...slotFields] = line.split(" ")
  return {
    id,
    port: portOfAddress(address),
    flags: new Set(flags.split(",")),
    primaryId: primary === "-" ? undefined : primary,
    linkState,
    slots: slotFields.flatMap(parseSlotField)
  }
}

/** The parsed `CLUSTER NODES` of the node on `port`. */
const clusterNodes = async (port: number): Promise<ReadonlyArray<NodeEntry>> =>
  (await respText(port, ["CLUSTER", "NODES"])).trim().split("\n").map(parseNodeLine)

const isFailing = (entry: NodeEntry): boolean => entry.flags.has("fail") || entry.flags.has("fail?")

/** The primaries (masters that serve slots) of one node's view. */
const primariesOf = (view: ReadonlyArray<NodeEntry>): Array<ClusterPrimary> =>
  view.filter((entry) => entry.flags.has("master") && entry.slots.length > 0).map((entry) => ({
    port: entry.port,
    id: entry.id,
    slots: entry.slots,
    replicas: view.filter((other) => other.primaryId === entry.id).map((other) => other.port).sort((a, b) => a - b),
    failing: isFailing(entry)
  })).sort((a, b) => (a.slots[0]?.[0] ?? 0) - (b.slots[0]?.[0] ?? 0))

/** The port serving `slot` in one node's view, or `undefined`. */
const ownerOf = (view: ReadonlyArray<NodeEntry>, slot: number): number | undefined =>
  view.find((entry) => entry.flags.has("master") && slotIn(slot, entry.slots))?.port

/** A view's slot map as one comparable string (`first-last:port`, by slot). */
const slotMapSignature = (view: ReadonlyArray<NodeEntry>): string =>
  primariesOf(view).flatMap((p) => p.slots.map(([first, last]) => `${first}-${last}:${p.port}`)).sort().join(" ")

// ---------------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------------

/** `CLUSTER INFO` of one node, waiting unless it is `ok` with every slot assigned and ok. */
const probeClusterInfo = async (port: number, nodeCount: number): Promise<string | undefined> => {
  const info = infoFields(await respText(port, ["CLUSTER", "INFO"]))
  const state = info.get("cluster_state")
  const assigned = Number(info.get("cluster_slots_assigned"))
  const slotsOk = Number(info.get("cluster_slots_ok"))
  const known = Number(info.get("cluster_known_nodes"))
  if (state !== "ok") return `${port}: cluster_state:${state}`
  if (assigned !== SLOT_COUNT || slotsOk !== SLOT_COUNT) return `${port}: slots assigned ${assigned}, ok ${slotsOk}`
  if (known !== nodeCount) return `${port}: knows ${known} nodes of ${nodeCount}`
  return undefined
}

/** Why one node's view is not whole (a node failing, in handshake, a link down), or `undefined`. */
const viewTrouble = (port: number, view: ReadonlyArray<NodeEntry>): string | undefined => {
  const bad = view.find((entry) =>
    isFailing(entry) || entry.flags.has("handshake") || entry.flags.has("noaddr") || entry.linkState !== "connected"
  )
  return bad === undefined ? undefined : `${port} sees ${bad.port} as ${[...bad.flags].join(",")} ${bad.linkState}`
}

/** The first reason among `checks` (run in order) to keep waiting, or `undefined`. */
const firstTrouble = async (checks: ReadonlyArray<() => Promise<string | undefined>>): Promise<string | undefined> => {
  for (const check of checks) {
    const why = await check()
    if (why !== undefined) return why
  }
  return undefined
}

/** Every primary of `view` has a replica and each replica is in sync. */
const replicasTrouble = (primaries: ReadonlyArray<ClusterPrimary>): Promise<string | undefined> =>
  firstTrouble(primaries.flatMap((primary) =>
    primary.replicas.length === 0
      ? [() => Promise.resolve(`${primary.port} has no replica`)]
      : primary.replicas.map((replica) => () => replicaSyncTrouble(replica, primary.port))
  ))

// ---------------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------------

const NODE_COUNT = 6
const DEFAULT_READY_TIMEOUT_MS = 60_000
const DEFAULT_PROMOTION_TIMEOUT_MS = 20_000

const nodeSpec = (port: number, busPort: number, nodeTimeoutMs: number): NodeSpec => {
  const dir = makeTempDir(`tk-cluster-${port}`)
  const logFile = path.join(dir, "redis.log")
  return {
    port,
    dir,
    logFile,
    args: settingsArgs({
      ...dataNodeSettings(port, dir, logFile),
      "cluster-port": String(busPort),
      "cluster-enabled": "yes",
      "cluster-config-file": "nodes.conf",
      "cluster-node-timeout": String(nodeTimeoutMs),
      "cluster-replica-validity-factor": "0"
    })
  }
}

/** Runs `redis-cli` with `args`; rejects with its output when it fails or outlives `timeoutMs`. */
const runRedisCli = (args: ReadonlyArray<string>, timeoutMs: number): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(redisCliBin(), [...args], { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error === null) return resolve(stdout)
      const output = `${stdout}\n${stderr}`.trim().split("\n").slice(-10).join("\n")
      reject(new Error(`redis-cli ${args.join(" ")} failed (${error.message.split("\n")[0]}):\n${output}`))
    })
  })

/** Joins the nodes on `ports` into a cluster with one replica per primary. */
const createCluster = (ports: ReadonlyArray<number>, timeoutMs: number): Promise<string> =>
  runRedisCli(
    ["--cluster", "create", ...ports.map((port) => `${LOOPBACK}:${port}`), "--cluster-replicas", "1", "--cluster-yes"],
    timeoutMs
  )

/** Starts the six processes (half of the ports go to the cluster bus). */
const startClusterNodes = (nodeTimeoutMs: number): Promise<Array<RedisNodeHandle>> =>
  withFreshPorts(NODE_COUNT * 2, (ports) => {
    const busPort = (i: number) => ports[i + NODE_COUNT] ?? 0
    const specs = ports.slice(0, NODE_COUNT).map((port, i) => nodeSpec(port, busPort(i), nodeTimeoutMs))
    return startNodes(specs, "cluster node")
  })

/** What `killPrimary` or `pausePrimary` noted of a primary before taking it down. */
interface DownedPrimary {
  readonly slots: ReadonlyArray<SlotRange>
  readonly replicas: ReadonlyArray<number>
  readonly downAt: number
}

/** The handle over six started and joined nodes. */
const makeHandle = (nodes: ReadonlyArray<RedisNodeHandle>): RedisClusterHandle => {
  const downed = new Map<number, DownedPrimary>()
  const running = () => nodes.filter((node) => node.state() === "running")

  const node = (port: number): RedisNodeHandle => {
    const found = nodes.find((candidate) => candidate.port === port)
    if (found === undefined) throw new Error(`no cluster node on port ${port}`)
    return found
  }

  /** The first running node's answer to `query`, trying the next one when a node fails to answer. */
  const fromAnyRunning = async <T>(query: (port: number) => Promise<T>): Promise<T> => {
    const errors: Array<string> = []
    for (const candidate of running()) {
      try {
        return await query(candidate.port)
      } catch (error) {
        errors.push(messageOf(error))
      }
    }
    throw new Error(`no running cluster node answered: ${errors.join("; ") || "none is running"}`)
  }

  const primaries = () => fromAnyRunning(async (port) => primariesOf(await clusterNodes(port)))

  const primaryForSlot = async (slot: number): Promise<number> => {
    const owner = (await primaries()).find((primary) => slotIn(slot, primary.slots))
    if (owner === undefined) throw new Error(`no primary serves slot ${slot}`)
    return owner.port
  }

  const command = async (args: ReadonlyArray<string>, viaPort?: number): Promise<RespValue> => {
    let port = viaPort ?? running()[0]?.port
    for (let hop = 0; port !== undefined && hop < 5; hop++) {
      const reply = await respCommand(port, args)
      if (!isErrorReply(reply) || !reply.error.startsWith("MOVED ")) return reply
      port = portOfAddress(reply.error.split(" ")[2] ?? "")
    }
    throw new Error(`${args.join(" ")}: no running node, or more than 5 MOVED redirections`)
  }

  /** Notes the primary on `port` (it must serve slots), then takes it down with `takeDown`. */
  const downPrimary = async (port: number, takeDown: (target: RedisNodeHandle) => Promise<void>) => {
    const primary = (await primaries()).find((candidate) => candidate.port === port)
    if (primary === undefined) throw new Error(`${port} is not a primary serving slots`)
    const downAt = Date.now()
    await takeDown(node(port))
    downed.set(port, { slots: primary.slots, replicas: primary.replicas, downAt })
  }

  const killPrimary = (port: number) => downPrimary(port, (target) => target.kill())
  const pausePrimary = (port: number) => downPrimary(port, async (target) => target.pause())

  /** The replica serving all of the dead primary's slots in every running node's view, or why not yet. */
  const probePromotion = async (deadPort: number, dead: DownedPrimary): Promise<ProbeResult<Promotion>> => {
    let newPrimaryPort: number | undefined
    for (const live of running()) {
      const infoTrouble = await probeClusterInfo(live.port, nodes.length)
      if (infoTrouble !== undefined) return waiting(infoTrouble)
      const view = await clusterNodes(live.port)
      const owners = new Set(dead.slots.map(([first]) => ownerOf(view, first)))
      const [owner] = owners
      if (owners.size !== 1 || owner === undefined || owner === deadPort || !dead.replicas.includes(owner)) {
        return waiting(`${live.port} sees the slots of ${deadPort} served by ${[...owners].join(",")}`)
      }
      if (newPrimaryPort !== undefined && newPrimaryPort !== owner) return waiting("the nodes disagree on the owner")
      newPrimaryPort = owner
    }
    if (newPrimaryPort === undefined) return waiting("no running node")
    const role = await node(newPrimaryPort).role()
    if (role !== "primary") return waiting(`${newPrimaryPort} answers ROLE as ${role}`)
    return ready({ deadPort, newPrimaryPort, elapsedMs: Date.now() - dead.downAt })
  }

  const awaitPromotion = (port: number, timeoutMs = DEFAULT_PROMOTION_TIMEOUT_MS): Promise<Promotion> => {
    const dead = downed.get(port)
    if (dead === undefined) {
      return Promise.reject(new Error(`awaitPromotion(${port}): call killPrimary or pausePrimary(${port}) first`))
    }
    return pollUntil(`promotion of a replica of ${port}`, timeoutMs, () => probePromotion(port, dead))
  }

  /** Why the cluster is not whole yet, or `undefined`. */
  const probeWhole = async (): Promise<ProbeResult<void>> => {
    const views: Array<ReadonlyArray<NodeEntry>> = []
    for (const each of nodes) {
      const infoTrouble = await probeClusterInfo(each.port, nodes.length)
      if (infoTrouble !== undefined) return waiting(infoTrouble)
      const view = await clusterNodes(each.port)
      const trouble = viewTrouble(each.port, view)
      if (trouble !== undefined) return waiting(trouble)
      views.push(view)
    }
    const signatures = new Set(views.map(slotMapSignature))
    if (signatures.size !== 1) return waiting(`slot maps differ: ${[...signatures].join(" | ")}`)
    const trouble = await replicasTrouble(primariesOf(views[0] ?? []))
    return trouble === undefined ? ready(undefined) : waiting(trouble)
  }

  const awaitReady = (timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<void> => {
    const notRunning = nodes.filter((each) => each.state() !== "running").map((each) => each.port)
    if (notRunning.length > 0) {
      return Promise.reject(new Error(`awaitReady: nodes ${notRunning.join(", ")} are not running`))
    }
    return pollUntil("the cluster whole (all nodes ok, slots covered, replicas in sync)", timeoutMs, probeWhole, 200)
  }

  const flushAll = async (): Promise<void> => {
    for (const primary of await primaries()) {
      const reply = await respCommand(primary.port, ["FLUSHALL"])
      if (reply !== "OK") throw new Error(`FLUSHALL on ${primary.port} answered ${JSON.stringify(reply)}`)
    }
  }

  return {
    seeds: nodes.map((each) => ({ host: each.host, port: each.port })),
    nodes,
    node,
    primaries,
    primaryForSlot,
    command,
    killPrimary,
    pausePrimary,
    awaitPromotion,
    awaitReady,
    flushAll,
    close: () => teardownNodes(nodes)
  }
}

/**
 * Starts a six-node cluster (three primaries, three replicas) and waits until it is whole; on a failure
 * everything started is killed and removed, and the error says what was last seen. Plain async, for
 * vitest hooks; see `RedisCluster.start` for the scoped Effect.
 */
export const startRedisCluster = async (options: RedisClusterOptions = {}): Promise<RedisClusterHandle> => {
  if (!redisServerAvailable()) throw new Error(MISSING_REDIS_HINT)
  if (!redisCliAvailable()) throw new Error(MISSING_REDIS_CLI_HINT)
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const nodes = await startClusterNodes(options.nodeTimeoutMs ?? STEADY_NODE_TIMEOUT_MS)
  const handle = makeHandle(nodes)
  try {
    await createCluster(nodes.map((each) => each.port), readyTimeoutMs)
    await handle.awaitReady(readyTimeoutMs)
    return handle
  } catch (error) {
    const logs = nodes.map((each) => `--- ${each.port}:\n${each.logTail(5)}`).join("\n")
    await handle.close()
    throw new Error(`Redis Cluster did not come up: ${messageOf(error)}\n${logs}`)
  }
}

/** A cluster as a scoped Effect: started on acquire, killed and removed when the scope closes. */
export const redisCluster = (
  options: RedisClusterOptions = {}
): Effect.Effect<RedisClusterHandle, RedisClusterError, Scope.Scope> =>
  scopedFixture(() => startRedisCluster(options), (reason) => new RedisClusterError({ reason }))

/** A cluster as a service, for `layer(...)` suites that share one cluster (see `flushAll`). */
export class RedisCluster extends Context.Tag("test/RedisCluster")<RedisCluster, RedisClusterHandle>() {
  /** A fresh cluster in the current scope: `const cluster = yield* RedisCluster.start()`. */
  static readonly start = redisCluster
  /** A fresh steady cluster per layer build. */
  static readonly layer: Layer.Layer<RedisCluster, RedisClusterError> = Layer.scoped(RedisCluster, redisCluster())
  /** A fresh cluster per layer build with the short node timeout, for suites that stop or kill nodes. */
  static readonly faultLayer: Layer.Layer<RedisCluster, RedisClusterError> = Layer.scoped(
    RedisCluster,
    redisCluster({ nodeTimeoutMs: FAULT_NODE_TIMEOUT_MS })
  )
}
