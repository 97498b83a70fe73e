/**
 * A Redis program against the public `/redis` entry: the URL comes from the environment as a `Redacted`,
 * the policies from the file. Prints one JSON line.
 */
import { Effect } from "effect"
import { PolicyFile, RateLimiter } from "throttlekit-effect"
import { RedisBackend } from "throttlekit-effect/redis"

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const key = `packed-${process.pid}`
  const checks = yield* Effect.forEach([1, 2, 3], () => limiter.check("api", key))
  const spent = yield* limiter.debit("llm", key, 640)
  return { allowed: checks.map((d) => d.allowed), llmRemaining: spent.remaining }
})

const url = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
const backend = Effect.map(
  PolicyFile.load("policies.yaml"),
  (policies) => RedisBackend.layer({ policies, redis: url })
)
Effect.runPromise(Effect.flatMap(backend, (layer) => Effect.provide(program, layer))).then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
