/**
 * Runs once before the test files: makes sure `redis-server`, `redis-cli` (the cluster fixture joins
 * its nodes with `redis-cli --cluster create`) and `chromium` (the Lens page tests drive it headless) are
 * there. When one is missing and we run as root on Debian/Ubuntu, its package is installed with apt-get;
 * otherwise the run stops with a one-line fix (a missing browser is an install problem, never a skip).
 * Sentinels need nothing more: they are `redis-server <conf> --sentinel`.
 */
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { chromiumAvailable, MISSING_CHROMIUM_HINT } from "./support/chromium.js"
import { MISSING_REDIS_CLI_HINT, redisCliAvailable } from "./support/redisCluster.js"
import { MISSING_REDIS_HINT, redisServerAvailable } from "./support/redisServer.js"

const run = (command: string, args: ReadonlyArray<string>): boolean => {
  const result = spawnSync(command, args, {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  })
  return result.error === undefined && result.status === 0
}

/** A tool the tests run, the Debian package that brings it, and the fix printed when it is missing. */
interface RequiredTool {
  readonly name: string
  readonly available: () => boolean
  readonly aptPackage: string
  readonly hint: string
}

const REQUIRED_TOOLS: ReadonlyArray<RequiredTool> = [
  { name: "redis-server", available: redisServerAvailable, aptPackage: "redis-server", hint: MISSING_REDIS_HINT },
  { name: "redis-cli", available: redisCliAvailable, aptPackage: "redis-tools", hint: MISSING_REDIS_CLI_HINT },
  { name: "chromium", available: chromiumAvailable, aptPackage: "chromium", hint: MISSING_CHROMIUM_HINT }
]

let aptUpdated = false

const installWithApt = (tool: RequiredTool): boolean => {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0
  if (!isRoot || !existsSync("/usr/bin/apt-get")) return false
  console.log(`[globalSetup] ${tool.name} is missing; installing ${tool.aptPackage} with apt-get`)
  if (!aptUpdated && !run("apt-get", ["update", "-qq"])) return false
  aptUpdated = true
  // redis-server may start a system service on 6379; the tests never use it, and we leave it alone.
  return run("apt-get", ["install", "-y", "-qq", tool.aptPackage])
}

export default function setup(): void {
  for (const tool of REQUIRED_TOOLS) {
    if (tool.available()) continue
    if (installWithApt(tool) && tool.available()) continue
    throw new Error(tool.hint)
  }
}
