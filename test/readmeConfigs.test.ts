/**
 * The README's example configs (its ```yaml blocks, one per kind, written as the ThrottleKit core documents
 * them) load unchanged and are served: each block is parsed as a whole policy file, served by our server
 * over the memory store and over a real `redis-server`, and each of its policies answers one call over
 * gRPC (a check, or an admission for an admitter) with an allowed decision.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as ServiceBackend from "../src/layers/ServiceBackend.js"
import * as PolicyFile from "../src/PolicyFile.js"
import * as ThrottleKitServer from "../src/server/ThrottleKitServer.js"
import { RateLimiter } from "../src/services/RateLimiter.js"
import { fencedBlocks } from "./support/markdown.js"
import { redisServer } from "./support/redisServer.js"

const ROOT = fileURLToPath(new URL("..", import.meta.url))

const blocks = fencedBlocks(readFileSync(path.join(ROOT, "README.md"), "utf8"), ["yaml", "yml"])

/** Serves `text` on a free loopback port and makes one call per policy; the decisions' `allowed`. */
const serveAndCall = (text: string, store: ThrottleKitServer.ServerStore) =>
  Effect.gen(function*() {
    const policies = yield* PolicyFile.parse(text, "README.md")
    const context = yield* Layer.build(ThrottleKitServer.layer({ policies, store, host: "127.0.0.1", port: 0 }))
    const address = Context.get(context, ThrottleKitServer.GrpcServer).address
    const answers = yield* Effect.provide(
      Effect.flatMap(RateLimiter, (limiter) =>
        Effect.forEach(policies.policies, (policy) =>
          policy.kind === "admitter"
            ? Effect.scoped(Effect.map(limiter.admit(policy.name, "tenant-a"), (a) => [policy.name, a.held] as const))
            : Effect.map(limiter.check(policy.name, "tenant-a"), (d) => [policy.name, d.allowed] as const))),
      ServiceBackend.layer({ target: address, deadline: "5 seconds" })
    )
    return { names: policies.names, answers }
  })

describe("the README's example configs", () => {
  it("has one block per kind to check", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6)
  })

  for (const block of blocks) {
    it.scopedLive(
      `README line ${block.line}: loads unchanged and is served over memory and Redis`,
      () =>
        Effect.gen(function*() {
          const memory = yield* serveAndCall(block.code, { kind: "memory" })
          expect(memory.answers).toEqual(memory.names.map((name) => [name, true]))
          const redis = yield* redisServer
          const onRedis = yield* serveAndCall(block.code, { kind: "redis", redis: redis.url })
          expect(onRedis.answers).toEqual(onRedis.names.map((name) => [name, true]))
        }),
      { timeout: 60_000 }
    )
  }
})
