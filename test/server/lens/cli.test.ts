/**
 * The Lens's flags: `--lens-port`, `--lens-host` (default loopback), `--lens-secret` / `--lens-secret-file`
 * (env `THROTTLEKIT_LENS_SECRET[_FILE]`): what `Cli.parse` / `Cli.load` make of them, the mistakes (a
 * non-loopback host without a secret among them), how `serve` turns them into server options, and the
 * CLI refusing a non-loopback Lens without a secret at startup with one line.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import * as PolicyFile from "../../../src/PolicyFile.js"
import { load, parse } from "../../../src/server/Cli.js"
import * as Serve from "../../../src/server/Serve.js"
import { runToEnd, tempFile } from "../cliProcess.js"

const serveArgs = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.flatMap(
    parse(["serve", "--config", "p.yaml", ...args], env),
    (command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
  )

const reason = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.map(Effect.flip(parse(["serve", "--config", "p.yaml", ...args], env)), (error) => error.reason)

/** `Cli.load`: the secret files read. */
const loaded = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  load(["serve", "--config", "p.yaml", ...args], env).pipe(
    Effect.flatMap((command) =>
      command._tag === "Serve" ? Effect.succeed(command.args) : Effect.dieMessage(`expected serve: ${command._tag}`)
    ),
    Effect.provide(NodeFileSystem.layer)
  )

const NOT_LOOPBACK =
  "--lens-host is not a loopback address: give --lens-secret or --lens-secret-file too (the page shows keys)"

describe("Cli: the Lens flags", () => {
  it.effect("no Lens unless --lens-port; alone it binds loopback", () =>
    Effect.gen(function*() {
      expect((yield* serveArgs([])).lens).toEqual(Option.none())
      expect((yield* serveArgs(["--lens-port", "9470"])).lens).toEqual(
        Option.some({ host: "127.0.0.1", port: 9470, secret: Option.none() })
      )
      // Loopback names need no secret either.
      for (const host of ["localhost", "::1", "127.0.0.2"]) {
        expect((yield* serveArgs(["--lens-port=0", "--lens-host", host])).lens).toEqual(
          Option.some({ host, port: 0, secret: Option.none() })
        )
      }
    }))

  it.effect("a non-loopback host needs a secret: refused without one, whatever the host", () =>
    Effect.gen(function*() {
      for (const host of ["0.0.0.0", "10.1.2.3", "lens.example.com", "::"]) {
        expect(yield* reason(["--lens-port", "0", "--lens-host", host])).toBe(NOT_LOOPBACK)
      }
      const withFlag = yield* serveArgs(["--lens-port", "0", "--lens-host", "0.0.0.0", "--lens-secret", "s3cret"])
      const lens = Option.getOrThrow(withFlag.lens)
      expect(lens.host).toBe("0.0.0.0")
      expect(lens.secret).toEqual(
        Option.some({ _tag: "Value", source: "--lens-secret", value: Redacted.make("s3cret") })
      )
      // The secret from the environment counts too.
      const withEnv = yield* serveArgs(["--lens-port", "0", "--lens-host", "0.0.0.0"], {
        THROTTLEKIT_LENS_SECRET: "from-env"
      })
      expect(Option.isSome(Option.getOrThrow(withEnv.lens).secret)).toBe(true)
    }))

  it.effect("mistakes: one line each, never repeating a secret", () =>
    Effect.gen(function*() {
      expect(yield* reason(["--lens-host", "127.0.0.1"])).toBe("--lens-host needs --lens-port")
      expect(yield* reason(["--lens-secret", "hush"])).toBe("--lens-secret needs --lens-port")
      expect(yield* reason(["--lens-secret-file", "/x"])).toBe("--lens-secret-file needs --lens-port")
      expect(yield* reason(["--lens-port", "65536"])).toBe("--lens-port must be a whole number from 0 to 65535")
      expect(yield* reason(["--lens-port", "0", "--lens-host", ""])).toBe("--lens-host must not be empty")
      expect(yield* reason(["--lens-port", "0", "--lens-secret", ""])).toBe("--lens-secret must not be empty")
      const both = yield* reason(["--lens-port", "0", "--lens-secret", "hush", "--lens-secret-file", "/x"])
      expect(both).toBe("--lens-secret and --lens-secret-file were both given; use one")
      expect(both).not.toContain("hush")
      // A secret in the environment without a Lens is left alone.
      expect((yield* serveArgs([], { THROTTLEKIT_LENS_SECRET: "unused" })).lens).toEqual(Option.none())
    }))

  it.effect("--lens-secret-file is read by load, without its trailing newline; serve passes the Lens on", () =>
    Effect.gen(function*() {
      const file = tempFile("lens-secret", "file-secret\n")
      const args = yield* loaded(["--lens-port", "0", "--lens-host", "0.0.0.0", "--lens-secret-file", file])
      const lens = Option.getOrThrow(args.lens)
      expect(Option.map(lens.secret, Redacted.value)).toEqual(Option.some("file-secret"))
      const policies = yield* PolicyFile.parse("limiters: {}\n", "test")
      const options = Serve.serverOptions(args, policies, undefined)
      expect(options.lens?.host).toBe("0.0.0.0")
      expect(options.lens?.port).toBe(0)
      expect(Option.map(Option.fromNullable(options.lens?.secret), Redacted.value)).toEqual(Option.some("file-secret"))
      const plain = Serve.serverOptions(yield* loaded([]), policies, undefined)
      expect(plain.lens).toBeUndefined()
    }))

  it.live(
    "serve refuses a non-loopback Lens without a secret: exit 1, one line, nothing bound",
    () =>
      Effect.gen(function*() {
        const config = tempFile("lens.yaml", "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n")
        const ended = yield* runToEnd(process.execPath, [
          "--import",
          "tsx",
          "src/server/bin.ts",
          "serve",
          "--config",
          config,
          "--port",
          "0",
          "--lens-port",
          "0",
          "--lens-host",
          "0.0.0.0"
        ])
        expect(ended.code).toBe(1)
        expect(ended.stdout).toBe("")
        expect(ended.stderr).toBe(`throttlekit-effect: ${NOT_LOOPBACK}\n`)
      }),
    60_000
  )
})
