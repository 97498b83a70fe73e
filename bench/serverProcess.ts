/**
 * Our gRPC server over the Memory door, as its own process for the service benchmarks (a deployed server
 * is another process; in the bench's own process it would share the event loop with the clients it
 * serves and hide their cost). Binds a free loopback port, prints `LISTENING <port>` on stdout, serves
 * until SIGTERM/SIGINT or until its parent closes stdin.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as MemoryBackend from "../src/layers/MemoryBackend.js"
import * as Server from "../src/server/Server.js"
import { benchPolicy } from "./policies.js"

const program = Effect.gen(function*() {
  const server = yield* Server.GrpcServer
  process.stdout.write(`LISTENING ${server.port}\n`)
  return yield* Effect.never
}).pipe(
  Effect.provide(
    Server.layer({ host: "127.0.0.1", port: 0 }).pipe(
      Layer.provide(MemoryBackend.layer({ policies: [benchPolicy] }))
    )
  )
)

// The parent closing our stdin (it exited, or it is done) ends the server.
process.stdin.on("end", () => process.kill(process.pid, "SIGTERM"))
process.stdin.resume()

NodeRuntime.runMain(program)
