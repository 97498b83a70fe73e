/**
 * Runs once before the test files: makes sure `redis-server` is there. When it is missing and we run as
 * root on Debian/Ubuntu, it is installed with apt-get; otherwise the run stops with a one-line fix.
 */
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { MISSING_REDIS_HINT, redisServerAvailable } from "./support/redisServer.js"

const run = (command: string, args: ReadonlyArray<string>): boolean => {
  const result = spawnSync(command, args, {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  })
  return result.error === undefined && result.status === 0
}

const installWithApt = (): boolean => {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0
  if (!isRoot || !existsSync("/usr/bin/apt-get")) return false
  console.log("[globalSetup] redis-server is missing; installing it with apt-get")
  if (!run("apt-get", ["update", "-qq"])) return false
  if (!run("apt-get", ["install", "-y", "-qq", "redis-server"])) return false
  // The package may start a system service on 6379; the tests never use it, and we leave it alone.
  return true
}

export default function setup(): void {
  if (redisServerAvailable()) return
  if (installWithApt() && redisServerAvailable()) return
  throw new Error(MISSING_REDIS_HINT)
}
