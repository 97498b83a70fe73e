/**
 * `npm run docs` loads this module into docgen and into the processes it starts (through NODE_OPTIONS).
 *
 * docgen copies every `@example` to `<outDir>/examples/`, rewrites its imports of the package to paths
 * into `src` (`from "throttlekit-effect/redis"` becomes `from "../../src/redis"`), typechecks the copies
 * with tsc, then runs them with tsx. This package's subpath entries live in `src/entries/`, so the
 * rewritten paths miss them: tsc finds them through `rootDirs` (docgen.json, `examplesCompilerOptions`),
 * and at run time this resolve hook sends `src/<name>` to `src/entries/<name>.ts` when that entry exists.
 * It touches nothing imported from inside `src`.
 */
import { existsSync } from "node:fs"
import { register } from "node:module"
import { fileURLToPath } from "node:url"
import { isMainThread } from "node:worker_threads"

const SRC = new URL("../src/", import.meta.url).href
const ENTRIES = new URL("../src/entries/", import.meta.url).href

/** The entry file a rewritten example import means, or `undefined` for any other import. */
const entryOf = (specifier, parentURL) => {
  if (parentURL === undefined || parentURL.startsWith(SRC)) return undefined
  let url
  try {
    url = new URL(specifier, parentURL).href
  } catch {
    return undefined
  }
  if (!url.startsWith(SRC)) return undefined
  const name = url.slice(SRC.length).replace(/\.(?:ts|js)$/, "")
  if (!/^[a-z]+$/.test(name)) return undefined
  const entry = `${ENTRIES}${name}.ts`
  return existsSync(fileURLToPath(entry)) ? entry : undefined
}

/** The module resolution hook (see `module.register`). */
export const resolve = (specifier, context, nextResolve) =>
  nextResolve(entryOf(specifier, context.parentURL) ?? specifier, context)

// Loaded by `--import`, this module registers itself; loaded again as the hooks module, it only exports.
if (isMainThread) register(import.meta.url)
