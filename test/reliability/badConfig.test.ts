/**
 * Malformed, duplicate and contradictory config (and unreadable files, a taken port) given to the CLI:
 * `throttlekit-effect serve` exits 1 with one line on stderr that names the problem, prints nothing on
 * stdout, and binds nothing. The expected reason is the loader's own (`PolicyFile.parse` on the same text),
 * so the test checks that the CLI reports exactly what the loader found, not a paraphrase.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as PolicyFile from "../../src/PolicyFile.js"
import { runToEnd, tempFile } from "../server/cliProcess.js"

const configRows: ReadonlyArray<readonly [string, string, string]> = [
  ["malformed YAML (an unclosed flow list)", "bad.yaml", "limiters:\n  api: [unclosed\n"],
  ["malformed JSON (a trailing comma)", "bad.json", "{\"limiters\": {\"api\": {\"strategy\": \"gcra\",}}}"],
  [
    "a duplicate policy (YAML)",
    "dup.yaml",
    "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n  api:\n    strategy: gcra\n    limit: 6\n    period: 1s\n"
  ],
  [
    "a duplicate field (JSON, which JSON.parse would silently collapse)",
    "dup.json",
    "{\"limiters\": {\"api\": {\"strategy\": \"fixedWindow\", \"limit\": 5, \"limit\": 6, \"windowMs\": 1000}}}"
  ],
  [
    "contradictory: minLimit above maxLimit",
    "minmax.yaml",
    "limiters:\n  pool:\n    concurrency:\n      minLimit: 5\n      maxLimit: 2\n"
  ],
  [
    "contradictory: a rate strategy and a token budget in one policy",
    "kinds.yaml",
    "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n    tokenBudget:\n      budget: 5\n      windowMs: 1000\n"
  ],
  [
    "contradictory: federated on a strategy that has no window",
    "federated.yaml",
    "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n    federated: {}\n"
  ],
  ["an empty file", "empty.yaml", ""],
  ["binary garbage", "garbage.yaml", "\u0000\u0001\u00ff binary \u0007"]
]

/** A loopback port held by another listener for the duration of the effect. */
const takenPort = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly close: () => void }>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({ port, close: () => server.close() }))
    })
  }),
  (held) => Effect.sync(() => held.close())
)

const good = tempFile("good.yaml", "limiters:\n  api:\n    strategy: gcra\n    limit: 5\n    period: 1s\n")

const serve = (args: ReadonlyArray<string>) =>
  runToEnd(process.execPath, ["--import", "tsx", "src/server/bin.ts", "serve", ...args])

/** The CLI ended as a refused start must: exit 1, nothing on stdout, one line on stderr. */
const expectRefused = (ended: { code: number | null; stdout: string; stderr: string }, reason: string) => {
  expect(ended.code).toBe(1)
  expect(ended.stdout).toBe("")
  const lines = ended.stderr.trimEnd().split("\n")
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(/^throttlekit-effect: /)
  expect(lines[0]).toContain(reason)
}

describe("the CLI refuses bad config with one line and exit 1", () => {
  it.live("malformed, duplicate and contradictory config files", () =>
    Effect.gen(function*() {
      const cases = yield* Effect.forEach(configRows, ([label, name, text]) =>
        Effect.gen(function*() {
          const file = tempFile(name, text)
          const error = yield* Effect.flip(PolicyFile.parse(text, file))
          return { label, file, reason: `${error.path}: ${error.reason}` }
        }))
      const ended = yield* Effect.forEach(cases, (c) => serve(["--config", c.file, "--port", "0"]), {
        concurrency: 2
      })
      ended.forEach((result, i) => {
        const { label, reason } = cases[i]!
        expect(label.length).toBeGreaterThan(0)
        expectRefused(result, reason)
      })
    }), { timeout: 240_000 })

  it.live(
    "a missing file, a directory, unreadable TLS material, a taken port",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = mkdtempSync(path.join(tmpdir(), "tk-dir-"))
        const taken = yield* takenPort
        const rows: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
          [["--config", path.join(dir, "missing.yaml"), "--port", "0"], "missing.yaml"],
          [["--config", dir, "--port", "0"], dir],
          [
            ["--config", good, "--port", "0", "--tls-cert", path.join(dir, "no.pem"), "--tls-key", good],
            `--tls-cert ${path.join(dir, "no.pem")}: cannot read the file`
          ],
          [["--config", good, "--port", String(taken.port)], `cannot listen on 127.0.0.1:${taken.port}`]
        ]
        const ended = yield* Effect.forEach(rows, ([args]) => serve(args), { concurrency: 2 })
        ended.forEach((result, i) => expectRefused(result, rows[i]![1]))
      })),
    { timeout: 240_000 }
  )
})
