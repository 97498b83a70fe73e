/**
 * Watching a server's decisions: a `Monitor.watch` stream prints denials live while three clients push
 * more requests than policy "api" (GCRA, 5 per second, burst 5) allows; then a `Monitor.snapshot` shows
 * what the server counted per policy (allowed/denied over the last minute, latency, top denied keys).
 *
 *   npx tsx examples/monitor.ts                              our server, in this process (memory store)
 *   npx tsx examples/monitor.ts --service host:port          e.g. against npm run serve -- --config examples/policies.yaml
 *
 * The Monitor door answers loopback callers only unless the server has a `--monitor-secret`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Chunk, Console, Effect, Fiber, Stream } from "effect"
import { PolicyFile, RateLimiter } from "throttlekit-effect"
import { Monitor, MonitorBackend } from "throttlekit-effect/monitor"
import { ServiceBackend } from "throttlekit-effect/service"
import { defaultPolicyFile, embeddedServer, isMain, runTag } from "./support.js"

/** Our server in this process on a free loopback port, serving examples/policies.yaml. */
const embeddedMonitorServer = Effect.flatMap(
  PolicyFile.load(defaultPolicyFile),
  embeddedServer
)

const program = Effect.gen(function*() {
  const monitor = yield* Monitor
  const limiter = yield* RateLimiter
  const tag = runTag()

  // Follow the denials of "api" (for at most 3 seconds, or the first 12).
  const watcher = yield* Effect.fork(
    monitor.watch("api").pipe(
      Stream.take(12),
      Stream.interruptWhen(Effect.sleep("3 seconds")),
      Stream.tap((e) =>
        Console.log(`  denied: ${e.policy} key=${e.key} limit=${e.limit} retryAfterMs=${e.retryAfterMs}`)
      ),
      Stream.runCollect
    )
  )
  // Give the server a moment to register the stream before the load starts.
  yield* Effect.sleep("200 millis")

  yield* Console.log("three clients send 8 requests each to \"api\" (5/s, burst 5); denials as they stream in:")
  const clients = ["alice", "bob", "carol"].map((name) => `${name}-${tag}`)
  const decisions = yield* Effect.forEach(
    clients,
    (key) => Effect.forEach(Array.from({ length: 8 }), () => limiter.check("api", key)),
    { concurrency: "unbounded" }
  )
  const denied = decisions.flat().filter((d) => !d.allowed).length
  const seen = Chunk.size(yield* Fiber.join(watcher))
  yield* Console.log(`the clients saw ${denied} denials; ${seen} arrived on the watch stream`)

  const snapshot = yield* monitor.snapshot
  yield* Console.log(`snapshot of node ${JSON.stringify(snapshot.meta.nodeId)} (last ${snapshot.meta.windowMs} ms):`)
  for (const p of snapshot.policies) {
    if (p.allowed + p.denied === 0) continue
    const top = p.topDenied.slice(0, 3).map((k) => `${k.key}:${k.count}`).join(", ")
    yield* Console.log(
      `  ${p.name.padEnd(8)} allowed=${p.allowed} denied=${p.denied} limit=${p.limit} ` +
        `p50=${p.latency.p50Ms.toFixed(3)}ms p99=${p.latency.p99Ms.toFixed(3)}ms` +
        (top === "" ? "" : ` top denied: ${top}`)
    )
  }
  yield* Console.log(
    `monitor example done: ${seen} denials watched live, ${snapshot.recentDenials.length} in the snapshot`
  )
})

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => {
  let service: string | undefined
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--service" && argv[i + 1] !== undefined) service = argv[++i]
    else {
      console.error(`unknown argument ${JSON.stringify(argv[i])}\nflags: [--service host:port]`)
      process.exitCode = 2
      return
    }
  }
  const main = Effect.scoped(Effect.gen(function*() {
    const target = service ?? (yield* embeddedMonitorServer)
    yield* Console.log(
      service === undefined
        ? `using our server in this process at ${target} (memory store, examples/policies.yaml)`
        : `using the ThrottleKit server at ${target}`
    )
    yield* program.pipe(
      Effect.provide(MonitorBackend.layer({ target, deadlineMs: 5000 })),
      Effect.provide(ServiceBackend.layer({ target, deadline: 5000 }))
    )
  }))
  NodeRuntime.runMain(main)
}

if (isMain(import.meta.url)) run(process.argv.slice(2))
