/**
 * Waiting admission: 50 jobs start at once under policy "pool" (a fixed ceiling of 5) and each waits for
 * a slot (`admitted(..., { wait })`) instead of failing and retrying. Waiters are served in arrival order;
 * a head of the line retries only when a slot is released (or, on a remote door, after a bounded
 * backoff), so the store sees no polling: the example counts every acquire the store answers and prints
 * how many were denied (at most one per job that had to wait: its first try). Then a waiting `limit` on a
 * rate limit ("api", 5 per second) and a deadline that ends a wait with `RateLimited`.
 *
 *   npm run example -- waiting [--redis URL | --service host:port]
 */
import { Console, Effect, Layer, Ref } from "effect"
import {
  admitted,
  type BackendError,
  Front,
  type InvalidArgument,
  limit,
  MemoryBackend,
  type PolicyError,
  PolicyFile,
  RateLimiterStore,
  type ServiceUnavailable
} from "throttlekit-effect"
import { RedisBackend } from "throttlekit-effect/redis"
import { ServiceBackend } from "throttlekit-effect/service"
import { type Backend, isMain, runExample, runTag } from "./support.js"

const JOBS = 50
const CEILING = 5

/** Acquires the store answered, and how many of them it denied. */
interface Tries {
  readonly acquires: number
  readonly denied: number
}

/** The door's store, as `limiterLayer` builds the door (policies from the same file). */
const storeLayer = (
  backend: Backend
): Layer.Layer<RateLimiterStore.Store, PolicyError | ServiceUnavailable | BackendError | InvalidArgument> => {
  switch (backend.kind) {
    case "memory":
      return Layer.unwrapEffect(
        Effect.map(PolicyFile.load(backend.policies), (policies) => MemoryBackend.layerStore({ policies }))
      )
    case "redis":
      return Layer.unwrapEffect(
        Effect.map(
          PolicyFile.load(backend.policies),
          (policies) => RedisBackend.layerStore({ policies, redis: backend.url, timeoutMs: 5000 })
        )
      )
    case "service":
      return ServiceBackend.layerStore({ target: backend.target, deadline: 5000 })
  }
}

/** The `RateLimiter` over `backend`'s store, with every acquire the store answers counted in `tries`. */
const countedLimiter = (backend: Backend, tries: Ref.Ref<Tries>) => {
  const count = <A extends { readonly held: boolean }, E>(acquire: Effect.Effect<A, E>) =>
    Effect.tap(
      acquire,
      (admission) =>
        Ref.update(tries, (t) => ({ acquires: t.acquires + 1, denied: t.denied + (admission.held ? 0 : 1) }))
    )
  const counted = Layer.effect(
    RateLimiterStore.Store,
    Effect.map(RateLimiterStore.Store, (store): RateLimiterStore.RateLimiterStore =>
      store._tag === "Remote"
        ? { ...store, acquire: (policy, key, options) => count(store.acquire(policy, key, options)) }
        : RateLimiterStore.mapLocal(store, {
          admitter: (_, bound) => ({ acquire: (key, options) => count(bound.acquire(key, options)) })
        }))
  )
  return Front.layer().pipe(Layer.provide(counted), Layer.provide(storeLayer(backend)))
}

/** 50 jobs at once through the ceiling of 5, each waiting for its slot; answers (done, peak in flight). */
const pool = (key: string) =>
  Effect.gen(function*() {
    const inFlight = yield* Ref.make(0)
    const peak = yield* Ref.make(0)
    const done = yield* Ref.make(0)
    /** One unit of work (20 ms), counted while it runs, holding a "pool" slot for exactly its duration. */
    const job = Effect.acquireUseRelease(
      Effect.tap(Ref.updateAndGet(inFlight, (n) => n + 1), (n) => Ref.update(peak, (p) => Math.max(p, n))),
      () => Effect.sleep("20 millis"),
      () => Ref.update(inFlight, (n) => n - 1)
    ).pipe(
      Effect.zipRight(Ref.update(done, (n) => n + 1)),
      admitted("pool", key, { wait: "30 seconds" }) // wait in line for a slot, up to 30 s
    )
    yield* Effect.forEach(Array.from({ length: JOBS }), () => job, { concurrency: "unbounded", discard: true })
    return { done: yield* Ref.get(done), peak: yield* Ref.get(peak) }
  })

const program = (backend: Backend) =>
  Effect.gen(function*() {
    const tag = runTag()
    const tries = yield* Ref.make<Tries>({ acquires: 0, denied: 0 })
    yield* Console.log(`${JOBS} jobs start at once under "pool" (ceiling ${CEILING}), each waiting for a slot:`)
    const { done, peak } = yield* pool(`jobs-${tag}`).pipe(Effect.provide(countedLimiter(backend, tries)))
    if (peak > CEILING) return yield* Effect.dieMessage(`peak ${peak} exceeded the ceiling ${CEILING}`)
    const { acquires, denied } = yield* Ref.get(tries)
    yield* Console.log(`all ${done} jobs done; peak in flight ${peak} (ceiling ${CEILING})`)
    yield* Console.log(
      `the store answered ${acquires} acquires: ${acquires - denied} held, ${denied} denied ` +
        `(without polling at most ${JOBS - CEILING}: one first try per job that had to wait)`
    )

    // The rate axis: a waiting limit sleeps the denial's retryAfterMs, then goes through.
    const user = `user-${tag}`
    for (let i = 0; i < 5; i++) yield* limit("api", user) // the burst of 5
    const started = Date.now()
    const sixth = yield* limit("api", user, { wait: "2 seconds" })
    yield* Console.log(
      `a 6th request on "api" waited ${Date.now() - started} ms, then was allowed (remaining ${sixth.remaining})`
    )

    // A deadline shorter than the wait the decision states ends the wait at once with RateLimited.
    const refused = yield* limit("api", user, { wait: "1 millis" }).pipe(
      Effect.as("allowed"),
      Effect.catchTag("RateLimited", (denied) =>
        Effect.succeed(`RateLimited, retry after ${denied.decision.retryAfterMs} ms`))
    )
    yield* Console.log(`a request willing to wait 1 ms: ${refused}`)
  })

/** Runs the example with `argv` (the dispatcher's entry). */
export const run = (argv: ReadonlyArray<string>): void => runExample(argv, {}, (args) => program(args.backend))

if (isMain(import.meta.url)) run(process.argv.slice(2))
