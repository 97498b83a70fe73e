/**
 * Rate checks: policy "api" (GCRA, 5 per second, bursting to 5). A burst from one client is cut at 5,
 * another client is unaffected, a read-only peek and a forecast say what is left, and after waiting the
 * advertised `retryAfterMs` the client gets through again. Also shows `limit`, which turns a denial into
 * a `RateLimited` failure for code that prefers the error channel.
 *
 *   npm run example -- rate [--redis URL | --service host:port]
 */
import { Console, Effect } from "effect"
import { type Decision, limit, RateLimiter } from "throttlekit-effect"
import { isMain, runExample, runTag } from "./support.js"

const show = (label: string, d: Decision): string =>
  `${label.padEnd(22)} ${d.allowed ? "ALLOW" : "DENY "} remaining=${d.remaining} limit=${d.limit}` +
  (d.allowed ? "" : ` retryAfterMs=${d.retryAfterMs}`)

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const tag = runTag()
  const alice = `alice-${tag}`
  const bob = `bob-${tag}`

  // A burst: seven requests at once (as a client retrying in a loop, or a page firing many calls).
  yield* Console.log("burst of 7 concurrent requests from alice on \"api\" (5/s, burst 5):")
  const burst = yield* Effect.all(Array.from({ length: 7 }, () => limiter.check("api", alice)), {
    concurrency: "unbounded"
  })
  const allowed = burst.filter((d) => d.allowed).length
  const denied = burst.find((d) => !d.allowed)
  for (const [i, decision] of burst.entries()) yield* Console.log(show(`  alice #${i + 1}`, decision))
  yield* Console.log(show("  bob #1", yield* limiter.check("api", bob)))

  const peek = yield* limiter.peek("api", alice)
  yield* Console.log(`peek (consumes nothing): alice has ${peek.remaining} left`)
  const forecast = yield* limiter.forecast("api", alice)
  yield* Console.log(
    `forecast: alice can spend ${forecast.spendableNow} now; next unit at +${
      Math.max(0, forecast.nextReplenishAt - Date.now())
    } ms`
  )

  // Batch: one consistent instant for several keys.
  const batch = yield* limiter.checkMany("api", [alice, bob, `carol-${tag}`])
  yield* Console.log(`checkMany [alice, bob, carol]: ${batch.map((d) => (d.allowed ? "allow" : "deny")).join(", ")}`)

  if (denied !== undefined) {
    yield* Console.log(`waiting the advertised ${denied.retryAfterMs} ms…`)
    yield* Effect.sleep(denied.retryAfterMs)
  }
  yield* Console.log(show("  alice after waiting", yield* limiter.check("api", alice)))

  // `limit` fails with RateLimited instead of returning a denial.
  const outcome = yield* limit("api", alice).pipe(
    Effect.zipRight(limit("api", alice)),
    Effect.zipRight(limit("api", alice)),
    Effect.as("all allowed"),
    Effect.catchTag("RateLimited", (error) => Effect.succeed(`RateLimited: ${error.message}`))
  )
  yield* Console.log(`limit() x3 right away: ${outcome}`)
  yield* Console.log(`rate example done: ${allowed} of alice's 7 burst requests were allowed (burst 5)`)
})

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => runExample(argv, {}, () => program)

if (isMain(import.meta.url)) run(process.argv.slice(2))
