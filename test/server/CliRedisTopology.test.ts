/**
 * The command line's Redis topologies: a cluster by seed nodes, a Sentinel-managed primary, the password
 * those take (flag, file or environment, never echoed), the deployment prefix and replica acks, and the
 * mistakes (two Redis at once, a bad node list, a password beside a URL).
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { inspect } from "node:util"
import { PolicySet } from "../../src/PolicySet.js"
import { load, parse, type ServeArgs } from "../../src/server/Cli.js"
import { serverOptions } from "../../src/server/Serve.js"
import { tempFile } from "./cliProcess.js"

const serveArgs = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  load(["serve", "--config", "p.yaml", ...args], env).pipe(
    Effect.flatMap((command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
    ),
    Effect.provide(NodeFileSystem.layer)
  )

const reason = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.map(Effect.flip(parse(["serve", "--config", "p.yaml", ...args], env)), (error) => error.reason)

const redisOf = (args: ServeArgs) => {
  if (args.store.kind !== "redis") throw new Error("expected a Redis store")
  return args.store
}

describe("Cli: Redis cluster and sentinel", () => {
  it.effect("--redis-cluster selects a Redis store with the seed nodes; the password comes from a file", () =>
    Effect.gen(function*() {
      const passwordFile = tempFile("redis-password", "s3cret-pw\n")
      const args = yield* serveArgs([
        "--redis-cluster",
        "10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002",
        "--redis-password-file",
        passwordFile,
        "--redis-prefix",
        "blue",
        "--redis-replica-acks",
        "1"
      ])
      const store = redisOf(args)
      expect(store.target._tag).toBe("Cluster")
      if (store.target._tag !== "Cluster") return
      expect(store.target.nodes).toEqual(["10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"])
      expect(Option.map(store.target.password, Redacted.value)).toEqual(Option.some("s3cret-pw"))
      expect(store.keyPrefix).toEqual(Option.some("blue"))
      expect(store.replicaAcks).toBe(1)
      // What the server is built from carries the same, and nothing prints the password.
      const options = serverOptions(args, yield* PolicySet.make([]), undefined)
      expect(options.store).toMatchObject({ kind: "redis", keyPrefix: "blue", replicaAcks: 1 })
      expect(inspect(args, { depth: 10 }) + JSON.stringify(args) + inspect(options, { depth: 10 })).not.toContain(
        "s3cret-pw"
      )
    }))

  it.effect("--redis-sentinel with a name, or the default name; from the environment too", () =>
    Effect.gen(function*() {
      const named = redisOf(
        yield* serveArgs(["--redis-sentinel", "127.0.0.1:26379,127.0.0.1:26380", "--redis-sentinel-name", "tk"])
      )
      expect(named.target).toMatchObject({
        _tag: "Sentinel",
        name: "tk",
        nodes: ["127.0.0.1:26379", "127.0.0.1:26380"]
      })
      const fromEnv = redisOf(
        yield* serveArgs([], { THROTTLEKIT_REDIS_SENTINEL: "127.0.0.1:26379", THROTTLEKIT_REDIS_PASSWORD: "pw" })
      )
      expect(fromEnv.target).toMatchObject({ _tag: "Sentinel", name: "mymaster" })
      expect(fromEnv.target._tag === "Sentinel" && Option.map(fromEnv.target.password, Redacted.value)).toEqual(
        Option.some("pw")
      )
      expect(fromEnv.keyPrefix).toEqual(Option.none())
      expect(fromEnv.replicaAcks).toBe(0)
    }))

  it.effect("mistakes are one-line usage errors that name no password", () =>
    Effect.gen(function*() {
      expect(yield* reason(["--redis", "redis://h:1", "--redis-cluster", "h:2"])).toBe(
        "--redis and --redis-cluster name two different Redis; give one"
      )
      expect(yield* reason(["--redis-cluster", "h:2", "--redis-sentinel", "h:3"])).toContain("two different Redis")
      expect(yield* reason(["--redis-cluster", "h:2,nope"])).toBe(
        "--redis-cluster must be a list of host:port separated by commas; \"nope\" is not one"
      )
      expect(yield* reason(["--redis-cluster", "h:70000"])).toContain("is not one")
      expect(yield* reason(["--redis", "redis://h:1", "--redis-password", "pw"])).toBe(
        "--redis-password is for --redis-cluster or --redis-sentinel; a Redis URL carries its own password"
      )
      expect(yield* reason(["--redis-cluster", "h:2", "--redis-sentinel-name", "x"])).toBe(
        "--redis-sentinel-name needs --redis-sentinel"
      )
      expect(yield* reason(["--store", "memory", "--redis-cluster", "h:2"])).toBe(
        "--redis-cluster needs --store redis (it was given with --store memory)"
      )
      expect(yield* reason(["--store", "memory", "--redis-prefix", "p"])).toBe(
        "--redis-prefix needs --store redis (it was given with --store memory)"
      )
      expect(yield* reason(["--redis-cluster", "h:2", "--redis-prefix", "a{b}"])).toContain("may not hold { or }")
      expect(yield* reason(["--redis-cluster", "h:2", "--redis-replica-acks", "17"])).toBe(
        "--redis-replica-acks must be a whole number from 0 to 16"
      )
      // A cluster in the environment yields to --store memory, as a URL does.
      const args = yield* serveArgs(["--store", "memory"], { THROTTLEKIT_REDIS_CLUSTER: "h:2" })
      expect(args.store).toEqual({ kind: "memory" })
    }))
})
