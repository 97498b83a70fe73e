/**
 * A Memory-only program, written as an app writes it: the root entry only, a policy file, no platform
 * layer (the file is read from the working directory). Prints one JSON line of what it saw.
 */
import { Effect } from "effect"
import { MemoryBackend, RateLimiter } from "throttlekit-effect"

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const checks = yield* Effect.forEach([1, 2, 3], () => limiter.check("api", "user-42"))
  const spent = yield* limiter.debit("llm", "team-a", 640)
  const held = yield* Effect.scoped(Effect.gen(function*() {
    const first = yield* limiter.admit("workers", "queue")
    const second = yield* limiter.admit("workers", "queue")
    return [first.held, second.held]
  }))
  const unknown = yield* Effect.flip(limiter.check("nope", "k"))
  return { allowed: checks.map((d) => d.allowed), llmRemaining: spent.remaining, held, fault: unknown._tag }
})

const policies = "policies.yaml"
Effect.runPromise(program.pipe(Effect.provide(MemoryBackend.layerFile(policies)))).then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
