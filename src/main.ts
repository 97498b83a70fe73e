/**
 * `npm start`: the main job on the embedded default (the Memory door, no Redis, no server). It loads
 * `examples/policies.yaml` and shows each axis deciding: a burst being denied, a token budget running
 * out, a concurrency ceiling holding, and a unified rate × concurrency admission.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import type { Admission, Decision } from "./Decision.js"
import * as MemoryBackend from "./layers/MemoryBackend.js"
import { RateLimiter } from "./services/RateLimiter.js"

const policyFile = process.argv[2] ?? new URL("../examples/policies.yaml", import.meta.url).pathname

const show = (label: string, d: Decision): string =>
  `${label.padEnd(26)} ${d.allowed ? "ALLOW" : "DENY "}  remaining=${
    String(d.remaining).padStart(4)
  }  limit=${d.limit}` +
  (d.allowed ? "" : `  retry in ${d.retryAfterMs} ms`)

const showAdmission = (label: string, a: Admission): string =>
  `${show(label, a.decision)}${a.held ? `  lease=${a.leaseId.slice(0, 8)}…` : `  bound by ${a.bindingAxis}`}`

const rate = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  yield* Console.log("\n== rate: policy \"api\" (GCRA, burst 5) — 7 requests from alice, 1 from bob")
  for (let i = 1; i <= 7; i++) yield* Console.log(show(`alice request ${i}`, yield* limiter.check("api", "alice")))
  yield* Console.log(show("bob request 1", yield* limiter.check("api", "bob")))
  const forecast = yield* limiter.forecast("api", "alice")
  yield* Console.log(
    `forecast for alice: ${forecast.spendableNow} spendable now, next unit in ${
      Math.max(0, forecast.nextReplenishAt - Date.now())
    } ms`
  )
})

const cost = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  yield* Console.log("\n== cost: policy \"llm\" (token budget) — completions debit the tokens they produce")
  const completions = [640, 480, 720, 300, 200]
  for (const [i, tokens] of completions.entries()) {
    yield* Console.log(show(`completion ${i + 1} (${tokens} tokens)`, yield* limiter.debit("llm", "team-a", tokens)))
  }
})

const concurrency = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  yield* Console.log("\n== concurrency: policy \"workers\" (ceiling 3) — four jobs ask for a slot")
  yield* Effect.scoped(Effect.gen(function*() {
    for (let i = 1; i <= 3; i++) {
      yield* Console.log(showAdmission(`job ${i}`, yield* limiter.admit("workers", "queue")))
    }
    yield* Console.log(showAdmission("job 4 (while 3 run)", yield* Effect.scoped(limiter.admit("workers", "queue"))))
  }))
  yield* Console.log(
    showAdmission("job 4 (after they finish)", yield* Effect.scoped(limiter.admit("workers", "queue")))
  )
})

const unified = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  yield* Console.log("\n== unified: policy \"jobs\" (2 in flight to start, and 10 jobs per minute per tenant)")
  yield* Effect.scoped(Effect.gen(function*() {
    yield* Console.log(showAdmission("acme long job 1", yield* limiter.admit("jobs", "acme")))
    yield* Console.log(showAdmission("acme long job 2", yield* limiter.admit("jobs", "acme")))
    yield* Console.log(showAdmission("globex job (2 running)", yield* Effect.scoped(limiter.admit("jobs", "globex"))))
  }))
  let started = 2
  while (true) {
    const admission = yield* Effect.scoped(limiter.admit("jobs", "acme"))
    if (!admission.held) {
      yield* Console.log(showAdmission(`acme short job ${++started}`, admission))
      break
    }
    started++
  }
  yield* Console.log(`(acme's short jobs 3..${started - 1} were admitted one after another)`)
})

const program = Effect.gen(function*() {
  yield* Console.log(`throttlekit-effect — embedded Memory door, policies from ${policyFile}`)
  yield* rate
  yield* cost
  yield* concurrency
  yield* unified
})

program.pipe(
  Effect.provide(MemoryBackend.layerFile(policyFile)),
  Effect.tapErrorTag("PolicyError", (error) => Console.error(error.message)),
  NodeRuntime.runMain
)
