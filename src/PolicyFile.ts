/**
 * The policy file loader: the `.throttlekit.yaml` / `.json` format the reference `throttlekit-server`
 * reads, turned into a validated `PolicySet`. `load` reads a file, `parse` takes its text, `decode` an
 * already-parsed value. The text is parsed by `policyFile/parse.ts` (JSON when its trimmed start is `{` or
 * `[`, YAML 1.2 otherwise) and decoded by `policyFile/decode.ts`, which describes the format in full and
 * lists where this loader is stricter than the reference's (an unknown field anywhere is an error, every
 * value is validated). The policies then meet the same rules as policies written in code (`PolicySet`).
 *
 * Errors: loading stops at the first problem, in file order, and fails with one `PolicyError` naming the
 * path of the offending field (`limiters.api.burst`), the reason, the file and the line. A bad file never
 * yields a partial `PolicySet`.
 *
 * This module was called `Config` before 0.2; it was renamed so it no longer shadows Effect's own `Config`.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { readFile } from "node:fs/promises"
import { decodePolicies } from "./policyFile/decode.js"
import { parseText } from "./policyFile/parse.js"
import { oneLine } from "./policyFile/problem.js"
import { PolicyError, type PolicySet, toPolicyError } from "./PolicySet.js"

// The error every loader function fails with, and the validated set it yields (both defined in
// `PolicySet.ts`, re-exported here so a file's user needs one import).
export {
  /**
   * What every loader function fails with (defined in `PolicySet.ts`).
   *
   * @since 0.1.0
   */
  PolicyError,
  /**
   * What every loader function yields (defined in `PolicySet.ts`).
   *
   * @since 0.1.0
   */
  PolicySet
} from "./PolicySet.js"

const parseEither = (
  text: string,
  source: string | undefined,
  options: PolicyFileOptions
): Either.Either<PolicySet, PolicyError> => {
  const parsed = parseText(text)
  if (Either.isLeft(parsed)) return Either.left(toPolicyError(parsed.left, source, undefined))
  const { locator, value } = parsed.right
  return Either.mapLeft(
    decodePolicies(value, locator, options),
    (problem) => toPolicyError(problem, source, locator)
  )
}

// ---------------------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------------------

/**
 * What a policy file leaves to the program reading it.
 *
 * @since 0.3.0
 * @category models
 */
export interface PolicyFileOptions {
  /**
   * The region of a `federated:` or `federatedFairEscrow:` block that names none (default `"default"`):
   * the server's `--region`, as the reference server's (`TK_REGION`).
   */
  readonly region?: string
}

/**
 * Decodes policy file text (JSON when its trimmed start is `{` or `[`, YAML otherwise) into a `PolicySet`.
 * Pure. `source` (a file name or label) is carried into errors; `options` fills what the file leaves
 * open (see `PolicyFileOptions`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const parse = (
  text: string,
  source?: string,
  options: PolicyFileOptions = {}
): Effect.Effect<PolicySet, PolicyError> => Effect.suspend(() => parseEither(text, source, options))

/**
 * Decodes an already-parsed policy file value (the shape of the file: `{ limiters: { ... } }`) with the
 * same rules as `parse`, for programs that build their policy file in code or bring their own parser.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (
  value: unknown,
  source?: string,
  options: PolicyFileOptions = {}
): Effect.Effect<PolicySet, PolicyError> =>
  Effect.suspend(() =>
    Either.mapLeft(decodePolicies(value, undefined, options), (problem) => toPolicyError(problem, source, undefined))
  )

/** Why a file could not be read, from Node's error code; never the file's content. */
const readFailure = (error: unknown): string => {
  const code = typeof error === "object" && error !== null && "code" in error ? error.code : undefined
  switch (code) {
    case "ENOENT":
      return "cannot read the file: not found"
    case "EACCES":
    case "EPERM":
      return "cannot read the file: permission denied"
    case "EISDIR":
      return "cannot read the file: it is a directory"
    default:
      return `cannot read the file: ${oneLine(error instanceof Error ? error.message : String(error))}`
  }
}

/**
 * Reads the policy file at `path` and decodes it like `parse`. A file that cannot be read is a
 * `PolicyError` whose `source` is `path`.
 *
 * It reads with `node:fs` and needs no platform layer, so a Memory-only program provides nothing for it.
 * A program that reads its files through `@effect/platform`'s `FileSystem` (to test on a mock one, say)
 * does `fs.readFileString(path)` and hands the text to `parse(text, path)`.
 *
 * @example
 * ```ts
 * import { Console, Effect } from "effect"
 * import { PolicyFile } from "throttlekit-effect"
 *
 * // Load once, then give the set to any door (`MemoryBackend.layerFile(path)` does both in one step).
 * export const main = PolicyFile.load("policies.yaml").pipe(
 *   Effect.tap((policies) => Console.log(policies.names)), // [ "api", "search", … ], in file order
 *   Effect.catchTag("PolicyError", (error) => Console.error(error.message))
 *   // e.g. "limiters.api.brust: unknown field (policies.yaml, line 4)"
 * )
 * ```
 *
 * @since 0.1.0
 * @category decoding
 */
export const load: (path: string, options?: PolicyFileOptions) => Effect.Effect<PolicySet, PolicyError> = Effect.fn(
  "PolicyFile.load"
)(
  function*(path: string, options: PolicyFileOptions = {}) {
    const text = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (error) => new PolicyError({ path: "config", reason: readFailure(error), source: path })
    })
    return yield* parse(text, path, options)
  }
)
