import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { DEFAULT_REDIS_URL, parse } from "../../src/server/Cli.js"

const serve = (...args: ReadonlyArray<string>) => parse(["serve", ...args])
const reason = (argv: ReadonlyArray<string>) => Effect.map(Effect.flip(parse(argv)), (error) => error.reason)

describe("Cli.parse", () => {
  it.effect("defaults: loopback, port 50051, memory store, insecure, 2 s lease TTL", () =>
    Effect.gen(function*() {
      const command = yield* serve("--config", "p.yaml")
      expect(command._tag).toBe("Serve")
      if (command._tag !== "Serve") return
      const args = command.args
      expect([args.config, args.host, args.port, args.store, args.leaseTtlMs, args.shutdownTimeoutMs]).toEqual([
        "p.yaml",
        "127.0.0.1",
        50051,
        { kind: "memory" },
        2000,
        5000
      ])
      expect(Option.isNone(args.tls)).toBe(true)
      expect(Option.isNone(args.monitorSecret)).toBe(true)
    }))

  it.effect("every flag, in both --flag value and --flag=value forms, with short aliases", () =>
    Effect.gen(function*() {
      const command = yield* serve(
        "-c",
        "p.yaml",
        "--host=0.0.0.0",
        "-p",
        "0",
        "--redis",
        "redis://10.0.0.1:6380",
        "--monitor-secret",
        "m",
        "--fleet-secret=f",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--tls-ca",
        "ca.pem",
        "--lease-ttl-ms",
        "3000",
        "--shutdown-timeout-ms",
        "100"
      )
      if (command._tag !== "Serve") return expect.fail("expected serve")
      const args = command.args
      expect([args.host, args.port, args.store, args.leaseTtlMs, args.shutdownTimeoutMs]).toEqual([
        "0.0.0.0",
        0,
        { kind: "redis", url: "redis://10.0.0.1:6380" },
        3000,
        100
      ])
      expect(Option.map(args.monitorSecret, Redacted.value)).toEqual(Option.some("m"))
      expect(String(Option.getOrThrow(args.fleetSecret))).not.toContain("f")
      expect(args.tls).toEqual(Option.some({ cert: "c.pem", key: "k.pem", ca: Option.some("ca.pem") }))
    }))

  it.effect("--store redis defaults the URL; secrets fall back to the environment", () =>
    Effect.gen(function*() {
      const command = yield* parse(["serve", "--config", "p.yaml", "--store", "redis"], {
        THROTTLEKIT_MONITOR_SECRET: "from-env"
      })
      if (command._tag !== "Serve") return expect.fail("expected serve")
      expect(command.args.store).toEqual({ kind: "redis", url: DEFAULT_REDIS_URL })
      expect(Option.map(command.args.monitorSecret, Redacted.value)).toEqual(Option.some("from-env"))
    }))

  it.effect("--fail: open by default, open or closed when given", () =>
    Effect.gen(function*() {
      const failMode = (...flags: ReadonlyArray<string>) =>
        Effect.map(serve("--config", "p.yaml", ...flags), (c) => c._tag === "Serve" ? c.args.failMode : "help")
      expect(yield* failMode()).toBe("open")
      expect(yield* failMode("--fail", "closed")).toBe("closed")
      expect(yield* failMode("--fail=open")).toBe("open")
    }))

  it.effect("help", () =>
    Effect.gen(function*() {
      expect((yield* parse(["--help"]))._tag).toBe("Help")
      expect((yield* serve("-h"))._tag).toBe("Help")
    }))

  it.effect("each mistake has a one-line reason", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [[], "missing command: expected \"serve\" (see --help)"],
        [["start"], "unknown command: \"start\" (expected \"serve\")"],
        [["serve"], "--config is required"],
        [["serve", "--config"], "--config needs a value"],
        [["serve", "--config", "p", "--bogus"], "unknown argument: --bogus"],
        [["serve", "--config", "p", "--port", "-1"], "--port must be a whole number from 0 to 65535, got \"-1\""],
        [["serve", "--config", "p", "--port", "65536"], "--port must be a whole number from 0 to 65535, got \"65536\""],
        [["serve", "--config", "p", "--port", "1", "--port", "2"], "--port given more than once"],
        [["serve", "--config", "p", "--store", "postgres"], "--store must be memory or redis, got \"postgres\""],
        [
          ["serve", "--config", "p", "--store", "memory", "--redis", "redis://x"],
          "--redis needs --store redis (it was given with --store memory)"
        ],
        [
          ["serve", "--config", "p", "--redis", "http://x"],
          "--redis must be a redis:// or rediss:// URL, got \"http://x\""
        ],
        [
          ["serve", "--config", "p", "--tls-cert", "c"],
          "TLS needs both --tls-cert and --tls-key (--tls-ca alone does not enable TLS)"
        ],
        [
          ["serve", "--config", "p", "--tls-ca", "ca"],
          "TLS needs both --tls-cert and --tls-key (--tls-ca alone does not enable TLS)"
        ],
        [
          ["serve", "--config", "p", "--lease-ttl-ms", "0"],
          "--lease-ttl-ms must be a whole number from 1 to 86400000, got \"0\""
        ],
        [["serve", "--config", "p", "--host", ""], "--host must not be empty"],
        [["serve", "--config", "p", "--fail", "ajar"], "--fail must be open or closed, got \"ajar\""],
        [["serve", "--config", "p", "--fail"], "--fail needs a value"]
      ]
      for (const [argv, expected] of cases) expect([argv, yield* reason(argv)]).toEqual([argv, expected])
    }))
})
