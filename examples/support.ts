/**
 * What every example shares: the command line (`--redis URL`, `--service host:port`, `--policies FILE`)
 * and the `RateLimiter` layer it picks. With no flag, the embedded Memory door serves the policies of
 * `examples/policies.yaml`; with `--redis`, the Redis door serves the same policies from Redis; with
 * `--service`, a ThrottleKit server answers (it must serve the same policy names, e.g.
 * `npm run serve -- --config examples/policies.yaml`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Context, Data, Effect, Either, Layer } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  type BackendError,
  type InvalidArgument,
  MemoryBackend,
  type PolicyError,
  PolicyFile,
  type PolicySet,
  type RateLimiter,
  type ServiceUnavailable
} from "throttlekit-effect"
import { RedisBackend } from "throttlekit-effect/redis"
import { ThrottleKitServer } from "throttlekit-effect/server"
import { ServiceBackend } from "throttlekit-effect/service"

/** The policy file the examples use unless `--policies` says otherwise. */
export const defaultPolicyFile = fileURLToPath(new URL("./policies.yaml", import.meta.url))

/** Which door answers. */
export type Backend =
  | { readonly kind: "memory"; readonly policies: string }
  | { readonly kind: "redis"; readonly url: string; readonly policies: string }
  | { readonly kind: "service"; readonly target: string }

/** A parsed command line: the backend, plus the example's own flags and valued options. */
export interface ExampleArgs {
  readonly backend: Backend
  readonly flags: ReadonlySet<string>
  readonly values: ReadonlyMap<string, string>
}

/** A bad command line, with its one-line reason. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/**
 * Parses `argv` (without the node and script paths). `flags` and `valued` name the example's own
 * switches (`--self-test`) and options taking a value (`--port N`); anything else is a usage error.
 */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  own: { readonly flags?: ReadonlyArray<string>; readonly valued?: ReadonlyArray<string> } = {}
): Either.Either<ExampleArgs, UsageError> => {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  const valued = new Set(["--redis", "--service", "--policies", ...(own.valued ?? [])])
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf("=")
    const name = arg.startsWith("--") && eq !== -1 ? arg.slice(0, eq) : arg
    if (valued.has(name)) {
      const value = eq !== -1 && arg.startsWith("--") ? arg.slice(eq + 1) : argv[++i]
      if (value === undefined || value === "") return Either.left(new UsageError({ reason: `${name} needs a value` }))
      values.set(name, value)
    } else if (own.flags?.includes(arg) === true) {
      flags.add(arg)
    } else {
      return Either.left(new UsageError({ reason: `unknown argument ${JSON.stringify(arg)}` }))
    }
  }
  const redis = values.get("--redis")
  const service = values.get("--service")
  const policies = values.get("--policies") ?? defaultPolicyFile
  if (redis !== undefined && service !== undefined) {
    return Either.left(new UsageError({ reason: "give --redis or --service, not both" }))
  }
  const backend: Backend = redis !== undefined
    ? { kind: "redis", url: redis, policies }
    : service !== undefined
    ? { kind: "service", target: service }
    : { kind: "memory", policies }
  return Either.right({ backend, flags, values })
}

/** One line naming the door, for the examples' first line of output. */
export const describeBackend = (backend: Backend): string => {
  switch (backend.kind) {
    case "memory":
      return `embedded Memory door (policies from ${backend.policies})`
    case "redis":
      return `Redis door at ${backend.url} (policies from ${backend.policies})`
    case "service":
      return `ThrottleKit server at ${backend.target}`
  }
}

/**
 * Generous bounds on each remote call: a demo on a busy laptop should not fail on a slow answer (the
 * doors' defaults are 1 s).
 */
const REMOTE_TIMEOUT_MS = 5000

/** The `RateLimiter` layer the command line picked. */
export const limiterLayer = (
  backend: Backend
): Layer.Layer<RateLimiter, PolicyError | ServiceUnavailable | BackendError | InvalidArgument> => {
  switch (backend.kind) {
    case "memory":
      return MemoryBackend.layerFile(backend.policies)
    case "redis":
      return Layer.unwrapEffect(
        Effect.map(
          PolicyFile.load(backend.policies),
          (policies) => RedisBackend.layer({ policies, redis: backend.url, timeoutMs: REMOTE_TIMEOUT_MS })
        )
      )
    case "service":
      return ServiceBackend.layer({ target: backend.target, deadline: REMOTE_TIMEOUT_MS })
  }
}

/**
 * Our server in this process on a free loopback port, built as `throttlekit-effect serve` builds it
 * (`ThrottleKitServer.layer`: memory store; Monitor and Fleet doors answering loopback callers), serving
 * `policies`. Returns its address; the server lives as long as the scope.
 */
export const embeddedServer = (policies: PolicySet) =>
  Effect.map(
    Layer.build(ThrottleKitServer.layer({ policies, host: "127.0.0.1", port: 0, nodeId: "example" })),
    (context) => Context.get(context, ThrottleKitServer.GrpcServer).address
  )

/** A short random tag, so keys of one run never meet the state of an earlier run on a shared backend. */
export const runTag = (): string => Math.random().toString(36).slice(2, 8)

/**
 * Runs an example as a program: parses the command line, prints the door, provides the `RateLimiter`,
 * and exits 0 on success, 1 on any failure (printed) or 2 on a usage error.
 */
export const runExample = <E>(
  argv: ReadonlyArray<string>,
  options: { readonly flags?: ReadonlyArray<string>; readonly valued?: ReadonlyArray<string> },
  program: (args: ExampleArgs) => Effect.Effect<void, E, RateLimiter>
): void => {
  const parsed = parseArgs(argv, options)
  if (Either.isLeft(parsed)) {
    console.error(`${parsed.left.reason}\nflags: [--redis URL | --service host:port] [--policies FILE]`)
    process.exitCode = 2
    return
  }
  const args = parsed.right
  const main = Console.log(`using the ${describeBackend(args.backend)}`).pipe(
    Effect.zipRight(program(args)),
    Effect.provide(limiterLayer(args.backend))
  )
  NodeRuntime.runMain(main)
}

/** True when `moduleUrl` is the script Node was started with (not imported by the dispatcher). */
export const isMain = (moduleUrl: string): boolean =>
  process.argv[1] !== undefined && fileURLToPath(moduleUrl) === path.resolve(process.argv[1])
