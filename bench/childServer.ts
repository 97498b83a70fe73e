/**
 * Our server as users run it: `throttlekit-effect serve` (src/server/bin.ts, through tsx like the
 * bench) in its own process, on a free loopback port, serving the bench policies from a temporary
 * config file. (In the bench's own process it would share the event loop with the clients it serves
 * and hide their cost.)
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { FLEET_POLICY, LIMIT_PER_SEC, POLICY } from "./policies.js"

/** A running server process. */
export interface ChildServer {
  /** The server process's id (its memory is read from /proc/<pid>/status). */
  readonly pid: number
  readonly port: number
  readonly target: string
  /** Stops the process (SIGTERM: a graceful shutdown) and waits for it to exit. */
  readonly close: () => Promise<void>
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/**
 * The bench policies in the server's config format: the GCRA policy every door checks, and a federated
 * fixed-window policy for the two fleet tiers (Check on the domain key is tier 1, Fleet.Reserve tier 2).
 */
const config = `version: 1
limiters:
  ${POLICY}:
    strategy: gcra
    limit: ${LIMIT_PER_SEC}
    period: 1s
    burst: ${LIMIT_PER_SEC}
    maxKeys: 100000
  ${FLEET_POLICY}:
    strategy: fixedWindow
    limit: ${LIMIT_PER_SEC}
    period: 60s
    federated:
      batch: 100
`

const waitExit = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** What a server is started with beside the defaults. */
export interface ChildServerOptions {
  /** The policy file's text (default: the bench policies above). */
  readonly config?: string
  /** More `serve` flags, e.g. `["--max-watch-streams", "1000"]`. */
  readonly args?: ReadonlyArray<string>
}

/** Starts `throttlekit-effect serve --store memory --port 0` and waits (up to `timeoutMs`) for its port. */
export const startChildServer = (timeoutMs = 30_000, options: ChildServerOptions = {}): Promise<ChildServer> => {
  const dir = mkdtempSync(join(tmpdir(), "tk-bench-"))
  const file = join(dir, "policies.yaml")
  writeFileSync(file, options.config ?? config)
  const cleanup = () => rmSync(dir, { recursive: true, force: true })
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(root, "src/server/bin.ts"),
        "serve",
        "--config",
        file,
        "--port",
        "0",
        ...(options.args ?? [])
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
    )
    let stdout = ""
    let stderr = ""
    const fail = (reason: string) => {
      cleanup()
      reject(new Error(`the bench server ${reason}: ${stderr.trim()}`))
    }
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      fail(`did not start within ${timeoutMs} ms`)
    }, timeoutMs)
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      fail(`exited early (${code ?? signal})`)
    })
    const onData = (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
      const match = /listening on \S*:(\d+)/.exec(stdout)
      if (match === null) return
      clearTimeout(timer)
      child.stdout.off("data", onData)
      child.stdout.resume()
      child.removeAllListeners("exit")
      const port = Number(match[1])
      resolve({
        pid: child.pid ?? 0,
        port,
        target: `127.0.0.1:${port}`,
        close: async () => {
          child.kill("SIGTERM")
          const killer = setTimeout(() => child.kill("SIGKILL"), 10_000)
          await waitExit(child)
          clearTimeout(killer)
          cleanup()
        }
      })
    }
    child.stdout.on("data", onData)
  })
}

let shared: Promise<ChildServer> | undefined

/** One server for every section of a run (it takes seconds to start): started on first use. */
export const sharedChildServer = (): Promise<ChildServer> => {
  if (shared === undefined) shared = startChildServer()
  return shared
}

/** Stops the shared server, if one was started. */
export const closeSharedChildServer = async (): Promise<void> => {
  const current = shared
  shared = undefined
  if (current !== undefined) await current.then((server) => server.close(), () => undefined)
}
