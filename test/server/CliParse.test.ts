import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { inspect } from "node:util"
import { DEFAULT_REDIS_URL, load, parse, type SecretRef, type ServeArgs } from "../../src/server/Cli.js"
import { tempFile } from "./cliProcess.js"

const serve = (...args: ReadonlyArray<string>) => parse(["serve", ...args])
const reason = (argv: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.map(Effect.flip(parse(argv, env)), (error) => error.reason)

/** The options of `serve <args>` with every file read (`Cli.load` over the real file system). */
const loadServe = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  load(["serve", "--config", "p.yaml", ...args], env).pipe(
    Effect.flatMap((command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
    ),
    Effect.provide(NodeFileSystem.layer)
  )

/** The failure of `loadServe`, as the error itself. */
const loadError = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.flip(loadServe(args, env))

const secretValue = (secret: Option.Option<Redacted.Redacted<string>>) => Option.map(secret, Redacted.value)
const redisUrl = (args: ServeArgs) =>
  args.store.kind === "redis" && args.store.target._tag === "Url" ? Redacted.value(args.store.target.url) : "memory"
/** A parsed (unread) ref, shown plainly for comparison. */
const shown = (ref: SecretRef) => ref._tag === "Value" ? `value ${Redacted.value(ref.value)}` : `file ${ref.path}`

/** A path in a fresh temporary directory where no file is. */
const missingFile = () => path.join(mkdtempSync(path.join(tmpdir(), "tk-cli-")), "absent.txt")

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
      expect(args.maxWatchStreams).toBe(100)
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
        "100",
        "--max-watch-streams=1000"
      )
      if (command._tag !== "Serve") return expect.fail("expected serve")
      const args = command.args
      expect([args.host, args.port, args.store.kind, args.leaseTtlMs, args.shutdownTimeoutMs, args.maxWatchStreams])
        .toEqual([
          "0.0.0.0",
          0,
          "redis",
          3000,
          100,
          1000
        ])
      if (args.store.kind !== "redis" || args.store.target._tag !== "Url") return expect.fail("expected a Redis URL")
      expect(shown(args.store.target.url)).toBe("value redis://10.0.0.1:6380")
      expect(Option.map(args.monitorSecret, shown)).toEqual(Option.some("value m"))
      expect(Option.map(args.fleetSecret, shown)).toEqual(Option.some("value f"))
      const fleet = Option.getOrThrow(args.fleetSecret)
      if (fleet._tag !== "Value") return expect.fail("expected a value")
      expect(String(fleet.value)).not.toContain("f")
      expect(args.tls).toEqual(
        Option.some({ cert: "c.pem", key: "k.pem", ca: Option.some("ca.pem"), allowNotYetValid: false })
      )
    }))

  it.effect("--store redis defaults the URL; secrets fall back to the environment", () =>
    Effect.gen(function*() {
      const args = yield* loadServe(["--store", "redis"], { THROTTLEKIT_MONITOR_SECRET: "from-env" })
      expect(redisUrl(args)).toBe(DEFAULT_REDIS_URL)
      expect(secretValue(args.monitorSecret)).toEqual(Option.some("from-env"))
      expect(secretValue(args.fleetSecret)).toEqual(Option.none())
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
        [["serve", "--config", "p", "--port", "-1"], "--port must be a whole number from 0 to 65535"],
        [["serve", "--config", "p", "--port", "65536"], "--port must be a whole number from 0 to 65535"],
        [["serve", "--config", "p", "--port", "1", "--port", "2"], "--port given more than once"],
        [["serve", "--config", "p", "--store", "postgres"], "--store must be memory or redis"],
        [
          ["serve", "--config", "p", "--store", "memory", "--redis", "redis://x"],
          "--redis needs --store redis (it was given with --store memory)"
        ],
        [
          ["serve", "--config", "p", "--redis", "http://x"],
          "--redis must be a redis:// or rediss:// URL, but the value has another scheme (not shown: it may hold a password)"
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
          "--lease-ttl-ms must be a whole number from 1 to 86400000"
        ],
        [
          ["serve", "--config", "p", "--max-watch-streams", "-1"],
          "--max-watch-streams must be a whole number from 0 to 1000000"
        ],
        [
          ["serve", "--config", "p", "--max-watch-streams", "many"],
          "--max-watch-streams must be a whole number from 0 to 1000000"
        ],
        [["serve", "--config", "p", "--host", ""], "--host must not be empty"],
        [["serve", "--config", "p", "--fail", "ajar"], "--fail must be open or closed"],
        [["serve", "--config", "p", "--fail"], "--fail needs a value"],
        [
          ["serve", "--config", "p", "--handshake-timeout-ms", "0"],
          "--handshake-timeout-ms must be a whole number from 1 to 600000"
        ],
        [
          ["serve", "--config", "p", "--idle-timeout-ms", "-5"],
          "--idle-timeout-ms must be a whole number from 0 to 86400000"
        ],
        [
          ["serve", "--config", "p", "--max-connections", "1e4"],
          "--max-connections must be a whole number from 1 to 1000000"
        ],
        [
          ["serve", "--config", "p", "--tls-allow-not-yet-valid"],
          "--tls-allow-not-yet-valid needs --tls-cert and --tls-key"
        ],
        [
          ["serve", "--config", "p", "--tls-allow-not-yet-valid=s3cret"],
          "--tls-allow-not-yet-valid takes no value"
        ]
      ]
      for (const [argv, expected] of cases) expect([argv, yield* reason(argv)]).toEqual([argv, expected])
    }))

  it.effect("connection bounds: defaults (10 s handshake, 5 min idle, 10 000 connections) and flags", () =>
    Effect.gen(function*() {
      const bounds = (...flags: ReadonlyArray<string>) =>
        Effect.map(
          serve("--config", "p.yaml", ...flags),
          (c) => c._tag === "Serve" ? [c.args.handshakeTimeoutMs, c.args.idleTimeoutMs, c.args.maxConnections] : []
        )
      expect(yield* bounds()).toEqual([10_000, 300_000, 10_000])
      expect(yield* bounds("--handshake-timeout-ms", "500", "--idle-timeout-ms=0", "--max-connections", "7")).toEqual([
        500,
        0,
        7
      ])
      const tls = yield* serve("--config", "p", "--tls-cert", "c", "--tls-key", "k", "--tls-allow-not-yet-valid")
      if (tls._tag !== "Serve") return expect.fail("expected serve")
      expect(Option.map(tls.args.tls, (t) => t.allowNotYetValid)).toEqual(Option.some(true))
    }))
})

describe("Cli.load: the secrets and the Redis URL from flags, files and the environment", () => {
  it.effect("each source gives the value; a file loses one trailing newline", () =>
    Effect.gen(function*() {
      const file = (text: string) => tempFile("secret", text)
      const monitor = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
        Effect.map(loadServe(args, env), (a) => secretValue(a.monitorSecret))
      const fleet = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
        Effect.map(loadServe(args, env), (a) => secretValue(a.fleetSecret))
      const redis = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
        Effect.map(loadServe(args, env), redisUrl)

      expect(yield* monitor(["--monitor-secret", "m-flag"])).toEqual(Option.some("m-flag"))
      expect(yield* monitor(["--monitor-secret-file", file("m-file\n")])).toEqual(Option.some("m-file"))
      expect(yield* monitor([], { THROTTLEKIT_MONITOR_SECRET: "m-env" })).toEqual(Option.some("m-env"))
      expect(yield* monitor([], { THROTTLEKIT_MONITOR_SECRET_FILE: file("m-env-file\n") })).toEqual(
        Option.some("m-env-file")
      )
      expect(yield* fleet(["--fleet-secret=f-flag"])).toEqual(Option.some("f-flag"))
      expect(yield* fleet([`--fleet-secret-file=${file("f-file\r\n")}`])).toEqual(Option.some("f-file"))
      expect(yield* fleet([], { THROTTLEKIT_FLEET_SECRET: "f-env" })).toEqual(Option.some("f-env"))
      expect(yield* fleet([], { THROTTLEKIT_FLEET_SECRET_FILE: file("f-env-file") })).toEqual(
        Option.some("f-env-file")
      )
      expect(yield* redis(["--redis", "redis://:pw@flag:6379"])).toBe("redis://:pw@flag:6379")
      expect(yield* redis(["--redis-file", file("rediss://:pw@file:6380\n")])).toBe("rediss://:pw@file:6380")
      expect(yield* redis([], { THROTTLEKIT_REDIS_URL: "redis://:pw@env:6381" })).toBe("redis://:pw@env:6381")
      expect(yield* redis([], { THROTTLEKIT_REDIS_URL_FILE: file("redis://:pw@env-file:6382\n") })).toBe(
        "redis://:pw@env-file:6382"
      )
      // Exactly one newline goes; other whitespace is part of the secret.
      expect(yield* monitor(["--monitor-secret-file", file("two\n\n")])).toEqual(Option.some("two\n"))
      expect(yield* monitor(["--monitor-secret-file", file(" spaced \n")])).toEqual(Option.some(" spaced "))
      expect(yield* monitor(["--monitor-secret-file", file("cr\r")])).toEqual(Option.some("cr\r"))
      // A Redis URL given any way selects the Redis store.
      expect((yield* loadServe([], { THROTTLEKIT_REDIS_URL: "redis://env:1" })).store.kind).toBe("redis")
      expect((yield* loadServe(["--redis-file", file("redis://f:1")])).store.kind).toBe("redis")
    }))

  it.effect("parse reads nothing: a file stays a path until load", () =>
    Effect.gen(function*() {
      const absent = missingFile()
      const command = yield* parse([
        "serve",
        "--config",
        "p.yaml",
        "--monitor-secret-file",
        absent,
        "--redis-file",
        absent
      ])
      if (command._tag !== "Serve") return expect.fail("expected serve")
      expect(Option.map(command.args.monitorSecret, shown)).toEqual(Option.some(`file ${absent}`))
      const store = command.args.store
      expect(store.kind === "redis" && store.target._tag === "Url" && shown(store.target.url)).toBe(`file ${absent}`)
      // --help wins before any file is read.
      expect(
        (yield* load(["serve", "--monitor-secret-file", absent, "--help"]).pipe(
          Effect.provide(NodeFileSystem.layer)
        ))._tag
      ).toBe("Help")
    }))

  it.effect("an empty file, or one holding only a newline, is a SecretFileError", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["--monitor-secret-file", "", "the file is empty"],
        ["--fleet-secret-file", "\n", "the file holds only a newline"],
        ["--monitor-secret-file", "\r\n", "the file holds only a newline"],
        ["--redis-file", "", "the file is empty"]
      ]
      for (const [flag, text, expected] of cases) {
        const file = tempFile("empty", text)
        const error = yield* loadError([flag, file])
        expect([error._tag, error._tag === "SecretFileError" && [error.source, error.path, error.reason]]).toEqual([
          "SecretFileError",
          [flag, file, expected]
        ])
        expect(error.message).toBe(`${flag} ${file}: ${expected}`)
      }
      const file = tempFile("empty", "")
      const fromEnv = yield* loadError([], { THROTTLEKIT_MONITOR_SECRET_FILE: file })
      expect(fromEnv.message).toBe(`THROTTLEKIT_MONITOR_SECRET_FILE ${file}: the file is empty`)
    }))

  it.effect("a missing or unreadable file is a SecretFileError naming the flag and the path", () =>
    Effect.gen(function*() {
      const absent = missingFile()
      const missing = yield* loadError(["--fleet-secret-file", absent])
      if (missing._tag !== "SecretFileError") return expect.fail(`expected SecretFileError: ${missing._tag}`)
      expect([missing.source, missing.path]).toEqual(["--fleet-secret-file", absent])
      expect(missing.message).toMatch(/^--fleet-secret-file \S+: cannot read the file \(NotFound: ENOENT/)
      expect(missing.message).toContain(absent)

      const fromEnv = yield* loadError([], { THROTTLEKIT_REDIS_URL_FILE: absent })
      expect(fromEnv.message).toMatch(/^THROTTLEKIT_REDIS_URL_FILE \S+: cannot read the file \(NotFound/)

      // A directory is not a file; the secrets beside it are not shown either.
      const directory = path.dirname(tempFile("secret", "beside-the-dir"))
      const notFile = yield* loadError(["--monitor-secret-file", directory, "--fleet-secret", "fl33t-value"])
      expect(notFile.message).toBe(`--monitor-secret-file ${directory}: it is not a regular file`)
      expect(notFile.message).not.toContain("beside-the-dir")
      expect(notFile.message).not.toContain("fl33t-value")
    }))

  it.effect("a device or an oversized file is refused before it is read (the read is bounded)", () =>
    Effect.gen(function*() {
      const device = yield* loadError(["--monitor-secret-file", "/dev/zero"])
      expect(device.message).toBe("--monitor-secret-file /dev/zero: it is not a regular file")
      const huge = tempFile("huge", "x".repeat(65_537))
      const oversized = yield* loadError(["--fleet-secret-file", huge])
      expect(oversized.message).toBe(`--fleet-secret-file ${huge}: the file is over 65536 bytes`)
      const largest = tempFile("largest", "y".repeat(65_536))
      const loaded = yield* loadServe(["--fleet-secret-file", largest])
      expect(Option.map(loaded.fleetSecret, (secret) => Redacted.value(secret).length)).toEqual(Option.some(65_536))
    }))

  it.effect("the value and the file form of one setting, both as flags or both as variables, is a mistake", () =>
    Effect.gen(function*() {
      const file = tempFile("secret", "from-file\n")
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Readonly<Record<string, string>>, string]> = [
        [
          ["--monitor-secret", "v4lue", "--monitor-secret-file", file],
          {},
          "--monitor-secret and --monitor-secret-file were both given; use one"
        ],
        [
          [`--fleet-secret-file=${file}`, "--fleet-secret=v4lue"],
          {},
          "--fleet-secret and --fleet-secret-file were both given; use one"
        ],
        [
          ["--redis", "redis://:v4lue@h:1", "--redis-file", file],
          {},
          "--redis and --redis-file were both given; use one"
        ],
        [
          [],
          { THROTTLEKIT_MONITOR_SECRET: "v4lue", THROTTLEKIT_MONITOR_SECRET_FILE: file },
          "THROTTLEKIT_MONITOR_SECRET and THROTTLEKIT_MONITOR_SECRET_FILE are both set; use one"
        ],
        [
          [],
          { THROTTLEKIT_FLEET_SECRET: "v4lue", THROTTLEKIT_FLEET_SECRET_FILE: file },
          "THROTTLEKIT_FLEET_SECRET and THROTTLEKIT_FLEET_SECRET_FILE are both set; use one"
        ],
        [
          [],
          { THROTTLEKIT_REDIS_URL: "redis://:v4lue@h:1", THROTTLEKIT_REDIS_URL_FILE: file },
          "THROTTLEKIT_REDIS_URL and THROTTLEKIT_REDIS_URL_FILE are both set; use one"
        ],
        [["--monitor-secret", ""], {}, "--monitor-secret must not be empty"],
        [["--fleet-secret-file="], {}, "--fleet-secret-file must not be empty"],
        [["--redis-file", ""], {}, "--redis-file must not be empty"],
        [
          ["--store", "memory", "--redis-file", file],
          {},
          "--redis-file needs --store redis (it was given with --store memory)"
        ]
      ]
      for (const [args, env, expected] of cases) {
        const got = yield* reason(["serve", "--config", "p.yaml", ...args], env)
        expect([args, env, got]).toEqual([args, env, expected])
        expect(got).not.toContain("v4lue")
      }
    }))

  it.effect("a flag wins over the environment; an empty variable counts as unset", () =>
    Effect.gen(function*() {
      const envFile = tempFile("secret", "env-file\n")
      const flagFile = tempFile("secret", "flag-file\n")
      const both = { THROTTLEKIT_MONITOR_SECRET: "env-value", THROTTLEKIT_MONITOR_SECRET_FILE: envFile }
      const monitor = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
        Effect.map(loadServe(args, env), (a) => secretValue(a.monitorSecret))

      expect(yield* monitor(["--monitor-secret", "flag-value"], { THROTTLEKIT_MONITOR_SECRET_FILE: envFile })).toEqual(
        Option.some("flag-value")
      )
      expect(yield* monitor(["--monitor-secret-file", flagFile], { THROTTLEKIT_MONITOR_SECRET: "env-value" })).toEqual(
        Option.some("flag-file")
      )
      // The environment is not consulted once a flag is given, so its own conflict does not matter.
      expect(yield* monitor(["--monitor-secret", "flag-value"], both)).toEqual(Option.some("flag-value"))
      expect(yield* monitor([], { THROTTLEKIT_MONITOR_SECRET: "", THROTTLEKIT_MONITOR_SECRET_FILE: envFile })).toEqual(
        Option.some("env-file")
      )
      expect(yield* monitor([], { THROTTLEKIT_MONITOR_SECRET: "" })).toEqual(Option.none())

      const redisEnv = { THROTTLEKIT_REDIS_URL: "redis://env:1" }
      expect(redisUrl(yield* loadServe(["--redis", "redis://flag:2"], redisEnv))).toBe("redis://flag:2")
      expect(redisUrl(yield* loadServe(["--redis-file", tempFile("url", "redis://flag-file:3\n")], redisEnv))).toBe(
        "redis://flag-file:3"
      )
      // --store memory is a flag too: a Redis URL in the environment yields to it.
      expect((yield* loadServe(["--store", "memory"], redisEnv)).store).toEqual({ kind: "memory" })
    }))

  it.effect("a Redis URL with a password, in a bad form, never shows in the error", () =>
    Effect.gen(function*() {
      const password = "hunter2-p4ss"
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Readonly<Record<string, string>>, string]> = [
        [
          ["--redis", `http://:${password}@cache:6379`],
          {},
          "--redis must be a redis:// or rediss:// URL, but the value has another scheme (not shown: it may hold a password)"
        ],
        [
          ["--redis", `:${password}@cache:6379`],
          {},
          "--redis must be a redis:// or rediss:// URL, but the value does not start with a scheme:// " +
          "(not shown: it may hold a password)"
        ],
        [
          ["--store", "redis"],
          { THROTTLEKIT_REDIS_URL: `redis:${password}@cache` },
          "THROTTLEKIT_REDIS_URL must be a redis:// or rediss:// URL, but the value does not start with a " +
          "scheme:// (not shown: it may hold a password)"
        ]
      ]
      for (const [args, env, expected] of cases) {
        const error = yield* loadError(args, env)
        expect([error._tag, error.message]).toEqual(["UsageError", expected])
        expect(error.message).not.toContain(password)
      }
      const file = tempFile("url", `https://default:${password}@cache:6379\n`)
      const fromFile = yield* loadError(["--redis-file", file])
      expect([fromFile._tag, fromFile.message]).toEqual([
        "SecretFileError",
        `--redis-file ${file}: the file must hold a redis:// or rediss:// URL, but its content has another scheme ` +
        "(not shown: it may hold a password)"
      ])
      expect(fromFile.message).not.toContain(password)
    }))

  it.effect("the loaded options print no secret and no Redis password", () =>
    Effect.gen(function*() {
      const args = yield* loadServe([
        "--redis-file",
        tempFile("url", "redis://:r3dis-pw@cache:6379\n"),
        "--monitor-secret-file",
        tempFile("m", "m0nitor-s3cret\n")
      ], { THROTTLEKIT_FLEET_SECRET: "fl33t-s3cret" })
      expect([redisUrl(args), secretValue(args.monitorSecret), secretValue(args.fleetSecret)]).toEqual([
        "redis://:r3dis-pw@cache:6379",
        Option.some("m0nitor-s3cret"),
        Option.some("fl33t-s3cret")
      ])
      for (
        const printed of [
          inspect(args, { depth: 10 }),
          JSON.stringify(args),
          String(args.store.kind === "redis" && args.store.target._tag === "Url" && args.store.target.url)
        ]
      ) {
        for (const secret of ["r3dis-pw", "m0nitor-s3cret", "fl33t-s3cret"]) expect(printed).not.toContain(secret)
      }
    }))
})
