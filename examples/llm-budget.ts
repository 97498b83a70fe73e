/**
 * An LLM token budget: policy "llm" gives each team 2000 tokens per minute. Completions are simulated
 * as a `Stream` of token chunks; each chunk is debited as it is produced, and the stream stops at the
 * chunk the budget refuses (the chunk that crosses the budget is counted in full, the next is refused).
 *
 *   npm run example -- llm-budget [--redis URL | --service host:port]
 */
import { Console, Effect, Either, Ref, Schedule, Stream } from "effect"
import { RateLimiter, spend } from "throttlekit-effect"
import { isMain, runExample, runTag } from "./support.js"

/** One chunk a model streams: some text and the tokens it cost. */
interface TokenChunk {
  readonly text: string
  readonly tokens: number
}

const prose = "Rate limits protect shared capacity. Budgets turn tokens into a currency teams can plan with. " +
  "A stream that knows its budget stops cleanly instead of failing halfway through a response."

/** A simulated completion: ~4 characters per token, one chunk per word, produced a millisecond apart. */
const completion = (n: number): Stream.Stream<TokenChunk> =>
  Stream.fromIterable(Array.from({ length: 3 + (n % 3) }, () => prose.split(" ")).flat()).pipe(
    Stream.map((word) => ({ text: word, tokens: Math.max(1, Math.ceil(word.length / 4)) * 8 })),
    Stream.schedule(Schedule.spaced("1 millis"))
  )

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter
  const team = `team-${runTag()}`
  yield* Console.log(`streaming completions for ${team} against "llm" (2000 tokens per minute)`)

  let total = 0
  for (let n = 1; n <= 30; n++) {
    const streamed = yield* Ref.make(0)
    // Debit each chunk as the stream produces it; `spend` fails with RateLimited when the budget refuses.
    const outcome = yield* completion(n).pipe(
      Stream.tap((chunk) =>
        Effect.zipRight(spend("llm", team, chunk.tokens), Ref.update(streamed, (t) => t + chunk.tokens))
      ),
      Stream.runDrain,
      Effect.either
    )
    const tokens = yield* Ref.get(streamed)
    total += tokens
    if (Either.isRight(outcome)) {
      yield* Console.log(`completion ${n}: ${tokens} tokens streamed`)
      continue
    }
    if (outcome.left._tag !== "RateLimited") return yield* outcome.left
    const decision = outcome.left.decision
    yield* Console.log(`completion ${n}: cut after ${tokens} tokens — the budget refused the next chunk`)
    yield* Console.log(
      `budget reached: ${total} tokens streamed in ${n} completions; the window resets in ${
        Math.ceil(decision.retryAfterMs / 1000)
      } s`
    )
    const after = yield* limiter.debit("llm", team, 1)
    yield* Console.log(`a further debit is ${after.allowed ? "allowed" : "refused"} (remaining ${after.remaining})`)
    return
  }
  yield* Console.log(`all completions fit in the budget (${total} tokens)`)
})

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => runExample(argv, {}, () => program)

if (isMain(import.meta.url)) run(process.argv.slice(2))
