/**
 * An HTTP program against the public `/http` entry: a Node HTTP server on a free loopback port with the
 * rate-limit middleware, and real requests to it. Prints one JSON line of the statuses and headers seen.
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import { MemoryBackend } from "throttlekit-effect"
import { HttpRateLimit, HttpRateLimitKeying } from "throttlekit-effect/http"

const program = Effect.gen(function*() {
  const rate = yield* HttpRateLimit.make({ policy: "api", key: HttpRateLimitKeying.byHeader("x-api-key") })
  const app = rate(HttpRouter.empty.pipe(HttpRouter.get("/", HttpServerResponse.text("hello"))))
  const context = yield* Layer.build(
    HttpServer.serve(app).pipe(Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })))
  )
  const url = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provide(context))
  const answers = []
  for (let i = 0; i < 3; i++) {
    const response = yield* Effect.tryPromise(() => fetch(url, { headers: { "x-api-key": "packed" } }))
    answers.push({ status: response.status, retryAfter: response.headers.get("retry-after") })
  }
  return answers
})

const policies = "policies.yaml"
Effect.runPromise(
  Effect.scoped(program).pipe(Effect.provide(MemoryBackend.layerFile(policies)))
).then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
