/**
 * Starts `throttlekit-effect serve` the way a user does (a separate Node process running the CLI entry
 * point), reads the bound address from its startup line, and stops it with a signal.
 */
import { Context, Data, Deferred, Duration, Effect, Layer, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"

/** The repository root (this file is test/server/cliProcess.ts). */
export const repoRoot = path.resolve(import.meta.dirname, "../..")

/** Writes `text` to a fresh temporary file and returns its path. */
export const tempFile = (name: string, text: string): string => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "tk-cli-")), name)
  writeFileSync(file, text)
  return file
}

/** How a child process ended. */
export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export class CliFailure extends Data.TaggedError("CliFailure")<{ readonly reason: string }> {}

/** Runs `args` (e.g. `["npx", "tsx", "src/server/bin.ts", ...]`) to completion. */
export const runToEnd = (command: string, args: ReadonlyArray<string>): Effect.Effect<Ended, CliFailure> =>
  Effect.async<Ended, CliFailure>((resume) => {
    const child = spawn(command, [...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", (error) => resume(Effect.fail(new CliFailure({ reason: error.message }))))
    child.on("close", (code, signal) => resume(Effect.succeed({ code, signal, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A running server process. */
export interface ServerProcess {
  readonly child: ChildProcess
  /** The bound address, as printed on the startup line. */
  readonly address: string
  readonly port: number
  /** The startup line. */
  readonly startupLine: string
  /** Sends SIGTERM and waits for the process to exit. */
  readonly stop: Effect.Effect<Ended>
  /** Everything the process printed so far. */
  readonly output: () => { readonly stdout: string; readonly stderr: string }
}

const startupPattern = /listening on (\S+):(\d+) /

/**
 * Starts the CLI (`node --import tsx src/server/bin.ts serve <args>`) and waits for its startup line.
 * The process is killed when the scope closes, if it is still running.
 */
export const startServer = (
  args: ReadonlyArray<string>
): Effect.Effect<ServerProcess, CliFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--import", "tsx", "src/server/bin.ts", "serve", ...args], {
          cwd: repoRoot,
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) =>
        Effect.sync(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        })
    )
    let stdout = ""
    let stderr = ""
    const exited = yield* Deferred.make<Ended>()
    const started = yield* Deferred.make<string, CliFailure>()
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
      const line = stdout.split("\n").find((l) => startupPattern.test(l))
      if (line !== undefined) Deferred.unsafeDone(started, Effect.succeed(line))
    })
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("close", (code, signal) => {
      Deferred.unsafeDone(exited, Effect.succeed({ code, signal, stdout, stderr }))
      Deferred.unsafeDone(
        started,
        Effect.fail(new CliFailure({ reason: `the server exited (${code ?? signal}) before listening: ${stderr}` }))
      )
    })
    const startupLine = yield* Deferred.await(started).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(90),
        onTimeout: () => new CliFailure({ reason: `no startup line within 90 s; output: ${stdout} ${stderr}` })
      })
    )
    const match = startupPattern.exec(startupLine)!
    return {
      child,
      address: `${match[1]}:${match[2]}`,
      port: Number(match[2]),
      startupLine,
      stop: Effect.suspend(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
        return Deferred.await(exited)
      }),
      output: () => ({ stdout, stderr })
    }
  })

/** A server process shared by a test file. */
export class CliServer extends Context.Tag("test/CliServer")<CliServer, ServerProcess>() {}

/** The server started with `args` for the life of the layer. */
export const cliServerLayer = (args: ReadonlyArray<string>): Layer.Layer<CliServer, CliFailure> =>
  Layer.scoped(CliServer, startServer(args))
