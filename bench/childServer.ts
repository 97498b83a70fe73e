/**
 * Starts `serverProcess.ts` as a child process and waits for the port it bound.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** A running server process. */
export interface ChildServer {
  readonly port: number
  readonly target: string
  /** Stops the process and waits for it to exit. */
  readonly close: () => Promise<void>
}

const here = dirname(fileURLToPath(import.meta.url))

const waitExit = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** Starts the server process (running TypeScript through tsx, like the bench) within `timeoutMs`. */
export const startChildServer = (timeoutMs = 30_000): Promise<ChildServer> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(here, "serverProcess.ts")], {
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`the bench server did not start within ${timeoutMs} ms: ${stderr.trim()}`))
    }, timeoutMs)
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`the bench server exited early (${code ?? signal}): ${stderr.trim()}`))
    })
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
      const match = /LISTENING (\d+)/.exec(stdout)
      if (match === null) return
      clearTimeout(timer)
      child.removeAllListeners("exit")
      const port = Number(match[1])
      resolve({
        port,
        target: `127.0.0.1:${port}`,
        close: async () => {
          child.kill("SIGTERM")
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000)
          await waitExit(child)
          clearTimeout(killer)
        }
      })
    })
  })
