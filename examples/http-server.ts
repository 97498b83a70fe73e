/**
 * An HTTP server guarded by the rate-limit middleware. Every request is charged to policy "search" (a
 * token bucket of 20, refilled at 2 per second) under the caller's `x-api-key` (or its address); the
 * expensive `/export` costs 5; `/report` also holds a "workers" slot (ceiling 3) while it runs.
 * Responses carry the IETF `RateLimit-Policy` / `RateLimit` headers (`--headers legacy` for
 * `X-RateLimit-*`); a denial is a 429 with `Retry-After`.
 *
 *   npm run example -- http-server [--port 8080] [--headers ietf|legacy] [--self-test]
 *                                  [--redis URL | --service host:port]
 *
 * Without `--self-test` it serves until Ctrl-C (try `curl -i http://127.0.0.1:8080/`). With
 * `--self-test` it listens on a free port, makes requests to itself, checks the answers and exits.
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Console, Data, Effect, Layer } from "effect"
import { createServer } from "node:http"
import type { RateLimiter } from "throttlekit-effect"
import { HttpRateLimit, HttpRateLimitKeying } from "throttlekit-effect/http"
import { type ExampleArgs, isMain, runExample, runTag } from "./support.js"

/** A self-test expectation that did not hold. */
class SelfTestFailed extends Data.TaggedError("SelfTestFailed")<{ readonly reason: string }> {}

/** The app: routes, a per-route admission on `/report`, and the global rate limit around everything. */
const makeApp = (headers: "ietf" | "legacy") =>
  Effect.gen(function*() {
    const rate = yield* HttpRateLimit.make({
      policy: "search",
      // A token bucket of 20 refilled at 2/s is full again 10 s after empty: RateLimit-Policy's w.
      window: "10 seconds",
      headers,
      key: HttpRateLimitKeying.byHeader("x-api-key"),
      cost: (request) => (request.url.startsWith("/export") ? 5 : 1)
    })
    const slot = yield* HttpRateLimit.make({ policy: "workers", headers, admit: true })
    const router = HttpRouter.empty.pipe(
      HttpRouter.get("/", HttpServerResponse.text("hello from a rate-limited server\n")),
      HttpRouter.get("/export", HttpServerResponse.text("an expensive export (cost 5)\n")),
      HttpRouter.get("/report", slot(Effect.as(Effect.sleep("500 millis"), HttpServerResponse.text("report ready\n"))))
    )
    return rate(router)
  })

/** The server on `port` (0 = a free one), serving the app; prints its URL once listening. */
const serverLayer = (args: ExampleArgs, port: number) =>
  Layer.unwrapEffect(
    Effect.map(makeApp(args.values.get("--headers") === "legacy" ? "legacy" : "ietf"), (app) => HttpServer.serve(app))
  ).pipe(
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
  )

const rateHeaders = (headers: Readonly<Record<string, string>>): string =>
  Object.entries(headers)
    .filter(([name]) => name.startsWith("ratelimit") || name.startsWith("x-ratelimit") || name === "retry-after")
    .map(([name, value]) => `${name}: ${value}`)
    .join("; ")

/** Requests to the server at `url`, printed and checked. */
const selfTest = (url: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const key = `self-test-${runTag()}`
    const get = (path: string, apiKey = key) =>
      client.execute(HttpClientRequest.get(`${url}${path}`).pipe(HttpClientRequest.setHeader("x-api-key", apiKey)))
        .pipe(
          Effect.tap((response) => Console.log(`GET ${path} -> ${response.status}  ${rateHeaders(response.headers)}`)),
          Effect.scoped
        )
    const expect = (ok: boolean, reason: string) => ok ? Effect.void : Effect.fail(new SelfTestFailed({ reason }))

    const first = yield* get("/")
    yield* expect(first.status === 200, `GET / answered ${first.status}`)
    yield* expect(
      first.headers["ratelimit"] !== undefined || first.headers["x-ratelimit-remaining"] !== undefined,
      "GET / carried no rate-limit headers"
    )

    // Five exports at once, 25 units against a bucket of 20: at least one must be refused.
    const exports = yield* Effect.all(Array.from({ length: 5 }, () => get("/export")), { concurrency: "unbounded" })
    const denied = exports.find((response) => response.status === 429)
    yield* expect(denied !== undefined, "five exports (cost 5 each) never hit the limit of 20")
    yield* expect(denied?.headers["retry-after"] !== undefined, "the 429 had no Retry-After")

    const reports = yield* Effect.all(
      Array.from({ length: 5 }, (_, i) => get("/report", `${key}-report-${i}`)),
      { concurrency: "unbounded" }
    )
    const admitted = reports.filter((response) => response.status === 200).length
    yield* expect(admitted >= 1 && admitted <= 3, `${admitted} of 5 concurrent reports ran (ceiling 3)`)
    yield* expect(admitted < 5, "the concurrency ceiling never bound")
    yield* Console.log(`self-test passed: limits, 429 + Retry-After, and ${admitted}/5 concurrent reports admitted`)
  }).pipe(Effect.provide(FetchHttpClient.layer))

const program = (args: ExampleArgs): Effect.Effect<void, unknown, RateLimiter> => {
  const selfTesting = args.flags.has("--self-test")
  const port = Number(args.values.get("--port") ?? (selfTesting ? "0" : "8080"))
  const headers = args.values.get("--headers")
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return Effect.fail(new SelfTestFailed({ reason: `--port must be 0..65535, got ${args.values.get("--port")}` }))
  }
  if (headers !== undefined && headers !== "ietf" && headers !== "legacy") {
    return Effect.fail(new SelfTestFailed({ reason: `--headers must be ietf or legacy, got ${headers}` }))
  }
  return Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(serverLayer(args, port))
    const url = yield* HttpServer.addressFormattedWith((address) => Effect.succeed(address)).pipe(
      Effect.provide(context)
    )
    yield* Console.log(`listening on ${url}`)
    if (selfTesting) return yield* selfTest(url)
    yield* Console.log("press Ctrl-C to stop")
    return yield* Effect.never
  }))
}

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void =>
  runExample(argv, { flags: ["--self-test"], valued: ["--port", "--headers"] }, program)

if (isMain(import.meta.url)) run(process.argv.slice(2))
