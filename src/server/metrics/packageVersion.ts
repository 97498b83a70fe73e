/**
 * This package's version, for the `version` label of `throttlekit_server_info`: read from the
 * `package.json` of `throttlekit-effect` found walking up from this module (so it works from `src/`
 * under tsx, from `dist/`, and from an installed copy); `unknown` when none can be read.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const PACKAGE_NAME = "throttlekit-effect"

const decodeManifest = Schema.decodeUnknownOption(
  Schema.parseJson(Schema.Struct({ name: Schema.String, version: Schema.String }))
)

/** The version in `file` when it is this package's manifest. */
const versionIn = (file: string): Effect.Effect<Option.Option<string>> =>
  Effect.map(
    Effect.option(Effect.try(() => readFileSync(file, "utf8"))),
    (text) =>
      Option.flatMap(
        Option.flatMap(text, decodeManifest),
        (manifest) => manifest.name === PACKAGE_NAME ? Option.some(manifest.version) : Option.none()
      )
  )

/**
 * The version of this package, or `unknown`.
 *
 * @since 0.3.0
 * @category constants
 */
export const packageVersion: Effect.Effect<string> = Effect.gen(function*() {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const found = yield* versionIn(path.join(dir, "package.json"))
    if (Option.isSome(found)) return found.value
    const parent = path.dirname(dir)
    if (parent === dir) return "unknown"
    dir = parent
  }
})
