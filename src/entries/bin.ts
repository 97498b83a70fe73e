#!/usr/bin/env node
/**
 * The `throttlekit-effect` executable as installed from the package: it checks that the optional peers
 * the server runs on are installed, then starts `server/bin.ts`. Without the check, a missing peer would
 * stop the process with a module-resolution stack trace; with it, the user reads one line naming what
 * to install.
 *
 * @since 0.2.0
 */

/** The optional peers the server imports, as the package declares them. */
const SERVER_PEERS = ["effect", "@effect/platform", "@effect/platform-node", "@grpc/grpc-js", "ioredis"] as const

const isResolvable = (specifier: string): boolean => {
  try {
    import.meta.resolve(specifier)
    return true
  } catch {
    return false
  }
}

const missing = SERVER_PEERS.filter((peer) => !isResolvable(peer))
if (missing.length > 0) {
  process.stderr.write(
    `throttlekit-effect: the server needs ${missing.join(", ")}; install with: npm install ${missing.join(" ")}\n`
  )
  process.exitCode = 1
} else {
  await import("../server/bin.js")
}
