#!/usr/bin/env node
/**
 * The `throttlekit-effect` executable: `throttlekit-effect serve --config FILE [...]` (see `--help`):
 * the command line parsed and its secret files read (`Cli.load`), then `Layer.launch` of the server
 * (`Serve.layer`). A bad flag, secret file, config, TLS file or bind exits 1 with a one-line reason on
 * stderr; `--version` prints the package version; SIGINT/SIGTERM shut the server down gracefully and
 * exit 0; SIGHUP reloads the policy file (see `Serve`).
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import * as grpc from "@grpc/grpc-js"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Cli from "./Cli.js"
import * as Serve from "./Serve.js"

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

/** The reason a run failed, as one line: the error's message, or the defect. */
const reason = (cause: Cause.Cause<{ readonly message: string }>): string =>
  oneLine(
    Option.match(Cause.failureOption(cause), {
      onNone: () => `internal error: ${Cause.pretty(cause)}`,
      onSome: (error) => error.message
    })
  )

// grpc-js prints its own copy of some failures (a bind error: "E No address added…") beside the typed
// error reported below, which breaks the one-line contract; GRPC_VERBOSITY still turns it back on.
if (process.env["GRPC_VERBOSITY"] === undefined) grpc.setLogVerbosity(grpc.logVerbosity.NONE)

const run = (
  command: Cli.Command
): Effect.Effect<void, Cli.VersionError | Serve.ServeError, FileSystem.FileSystem | Path.Path> => {
  switch (command._tag) {
    case "Help":
      return Console.log(Cli.usage)
    case "Version":
      return Effect.flatMap(Cli.version, (version) => Console.log(version))
    case "Serve":
      return Layer.launch(Serve.layer(command.args))
  }
}

const program = Cli.load(process.argv.slice(2), process.env).pipe(
  Effect.flatMap(run),
  Effect.tapErrorCause((cause) =>
    Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(`throttlekit-effect: ${reason(cause)}`)
  ),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
