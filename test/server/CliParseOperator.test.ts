/**
 * `Cli.parse` on the operator flags: `--monitor on|off`, `--metrics-port`, `--metrics-host`, `--region`
 * (env `TK_REGION`) and `--node-id` (env `TK_NODE_ID`), their defaults, their mistakes, and how `serve`
 * turns them into server options (`Serve.serverOptions`) and a policy file's default region.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as PolicyFile from "../../src/PolicyFile.js"
import { load, parse, type ServeArgs } from "../../src/server/Cli.js"
import * as Serve from "../../src/server/Serve.js"

const serveArgs = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.flatMap(
    parse(["serve", "--config", "p.yaml", ...args], env),
    (command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
  )

/** The options of `serve <args>` as `serve` runs them (`Cli.load`: every file read; none is named here). */
const loaded = (args: ReadonlyArray<string>) =>
  load(["serve", "--config", "p.yaml", ...args]).pipe(
    Effect.flatMap((command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
    ),
    Effect.provide(NodeFileSystem.layer)
  )

const reason = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.map(Effect.flip(parse(["serve", "--config", "p.yaml", ...args], env)), (error) => error.reason)

const operator = (args: Pick<ServeArgs, "monitor" | "metrics" | "region" | "nodeId">) => ({
  monitor: args.monitor,
  metrics: args.metrics,
  region: args.region,
  nodeId: args.nodeId
})

describe("Cli.parse: the operator flags", () => {
  it.effect("defaults: Monitor on, no /metrics, region \"default\", no node id (the server's host:port)", () =>
    Effect.gen(function*() {
      expect(operator(yield* serveArgs([]))).toEqual({
        monitor: true,
        metrics: Option.none(),
        region: "default",
        nodeId: Option.none()
      })
    }))

  it.effect("--metrics-port alone binds loopback; --metrics-host chooses the interface; 0 picks a port", () =>
    Effect.gen(function*() {
      expect((yield* serveArgs(["--metrics-port", "9464"])).metrics).toEqual(
        Option.some({ host: "127.0.0.1", port: 9464 })
      )
      expect((yield* serveArgs(["--metrics-port=0", "--metrics-host", "0.0.0.0"])).metrics).toEqual(
        Option.some({ host: "0.0.0.0", port: 0 })
      )
    }))

  it.effect("--monitor on|off, --region and --node-id as flags", () =>
    Effect.gen(function*() {
      const args = yield* serveArgs(["--monitor", "off", "--region", "eu-west-1", "--node-id=pod-7"])
      expect(operator(args)).toEqual({
        monitor: false,
        metrics: Option.none(),
        region: "eu-west-1",
        nodeId: Option.some("pod-7")
      })
      expect((yield* serveArgs(["--monitor", "on"])).monitor).toBe(true)
    }))

  it.effect("TK_REGION and TK_NODE_ID stand in for the flags; a flag wins; an empty variable is unset", () =>
    Effect.gen(function*() {
      const env = { TK_REGION: "us-east-2", TK_NODE_ID: "host#42" }
      expect(operator(yield* serveArgs([], env))).toMatchObject({ region: "us-east-2", nodeId: Option.some("host#42") })
      expect(operator(yield* serveArgs(["--region", "r", "--node-id", "n"], env))).toMatchObject({
        region: "r",
        nodeId: Option.some("n")
      })
      expect(operator(yield* serveArgs([], { TK_REGION: "", TK_NODE_ID: "" }))).toMatchObject({
        region: "default",
        nodeId: Option.none()
      })
    }))

  it.effect("mistakes are usage errors with a one-line reason", () =>
    Effect.gen(function*() {
      expect(yield* reason(["--monitor", "maybe"])).toBe("--monitor must be on or off")
      expect(yield* reason(["--metrics-port", "65536"])).toBe("--metrics-port must be a whole number from 0 to 65535")
      expect(yield* reason(["--metrics-port", "-1"])).toBe("--metrics-port must be a whole number from 0 to 65535")
      expect(yield* reason(["--metrics-port", "9x"])).toBe("--metrics-port must be a whole number from 0 to 65535")
      expect(yield* reason(["--metrics-host", "0.0.0.0"])).toBe("--metrics-host needs --metrics-port")
      expect(yield* reason(["--metrics-port", "1", "--metrics-host="])).toBe("--metrics-host must not be empty")
      expect(yield* reason(["--metrics-port", "1", "--metrics-port", "2"])).toBe("--metrics-port given more than once")
      expect(yield* reason(["--region="])).toBe("--region must be 1 to 256 characters, none a control character")
      expect(yield* reason(["--node-id", "a\nb"])).toBe(
        "--node-id must be 1 to 256 characters, none a control character"
      )
      expect(yield* reason(["--node-id", "x".repeat(257)])).toBe(
        "--node-id must be 1 to 256 characters, none a control character"
      )
      expect(yield* reason([], { TK_REGION: "a\tb" })).toBe(
        "TK_REGION must be 1 to 256 characters, none a control character"
      )
      expect(yield* reason(["--monitor"])).toBe("--monitor needs a value")
    }))

  it.effect("serve passes them on: region, Monitor switch, /metrics, and a node id only when given", () =>
    Effect.gen(function*() {
      const policies = yield* PolicyFile.parse("limiters:\n  api: { strategy: gcra, limit: 5, period: 1s }\n", "t")
      const given = yield* loaded([
        "--metrics-port",
        "9464",
        "--monitor",
        "off",
        "--region",
        "r1",
        "--node-id",
        "n1"
      ])
      expect(Serve.serverOptions(given, policies, undefined)).toMatchObject({
        monitor: false,
        metrics: { host: "127.0.0.1", port: 9464 },
        region: "r1",
        nodeId: "n1"
      })
      const plain = Serve.serverOptions(yield* loaded([]), policies, undefined)
      expect(plain).toMatchObject({ monitor: true, region: "default" })
      expect("metrics" in plain || "nodeId" in plain).toBe(false)
    }))
})

describe("PolicyFile: the region of federated: blocks", () => {
  const file = (region: string) => `
limiters:
  global:
    strategy: fixedWindow
    limit: 10
    windowMs: 1000
    federated:
      batch: 2${region}
`
  const regionOf = (text: string, options?: PolicyFile.PolicyFileOptions) =>
    Effect.map(PolicyFile.parse(text, "t", options), (set) => {
      const policy = set.policies[0]!
      return policy.kind === "limiter" ? policy.federated?.region : undefined
    })

  it.effect("a block without a region takes the reader's (serve --region), else \"default\"; its own wins", () =>
    Effect.gen(function*() {
      expect(yield* regionOf(file(""))).toBe("default")
      expect(yield* regionOf(file(""), { region: "eu-west-1" })).toBe("eu-west-1")
      expect(yield* regionOf(file("\n      region: ap-south-1"), { region: "eu-west-1" })).toBe("ap-south-1")
    }))
})
