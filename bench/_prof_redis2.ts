import { Effect, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import * as RedisBackend from "../src/layers/RedisBackend.js"
import { safeOptions } from "../src/redis/RedisClient.js"
import { evalArgs, makeScriptRunner, type Reply } from "../src/redis/ScriptRunner.js"
import { loadScripts, marshal } from "../src/redis/Scripts.js"
import { RateLimiter } from "../src/services/RateLimiter.js"
import { startRedisServer } from "../test/support/redisServer.js"
import { benchPolicy, gcraStrategy, keyOf, POLICY } from "./policies.js"

const server = await startRedisServer()
const rt = ManagedRuntime.make(RedisBackend.layer({ policies: [benchPolicy], redis: server.url }))
const limiter = await rt.runPromise(RateLimiter)
const catalog = await Effect.runPromise(loadScripts())
const script = catalog.find("gcra", "check")!
const { kind: _k, ...params } = gcraStrategy
const argv = await Effect.runPromise(marshal(script, "argv", { ...params, now: 0, cost: 1 }))
const raw = new Redis(server.url)
const safe = new Redis(server.url, safeOptions(1000))
await safe.connect().catch(() => {})
await raw.script("LOAD", script.text)
const runner = makeScriptRunner(raw, 1000)
const N = 20000
const slots = Array.from({ length: 64 }, (_, i) => i)
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system)
}
const evalsha = (c: Redis, i: number) =>
  c.evalsha(script.sha1, ...evalArgs({ script, keys: ["bench:" + keyOf(i)], argv })) as Promise<Reply>
const auto = new Redis(server.url, { enableAutoPipelining: true })
const timed = <A>(promise: () => Promise<A>) =>
  Effect.async<A, Error>((resume) => {
    let done = false
    const timer = setTimeout(() => {
      done = true
      resume(Effect.fail(new Error("timeout")))
    }, 1000)
    promise().then(
      (value) => {
        if (!done) {
          done = true
          clearTimeout(timer)
          resume(Effect.succeed(value))
        }
      },
      (error) => {
        if (!done) {
          done = true
          clearTimeout(timer)
          resume(Effect.fail(error as Error))
        }
      }
    )
    return Effect.sync(() => {
      done = true
      clearTimeout(timer)
    })
  })
const variants: Record<string, (i: number) => Effect.Effect<unknown, unknown>> = {
  check: (i) => limiter.check(POLICY, keyOf(i)),
  runnerRun: (i) => runner.run({ script, keys: ["bench:" + keyOf(i)], argv }),
  tryPromise: (i) => Effect.tryPromise(() => evalsha(raw, i)),
  tryPromiseSafeClient: (i) => Effect.tryPromise(() => evalsha(safe, i)),
  asyncTimer: (i) => timed(() => evalsha(raw, i)),
  asyncTimerAuto: (i) => timed(() => evalsha(auto, i)),
  tryPromiseTimeout: (i) => Effect.timeout(Effect.tryPromise(() => evalsha(raw, i)), 1000)
}
const only = process.argv[2]
for (let r = 0; r < 2; r++) {
  for (const [name, op] of Object.entries(variants)) {
    if (only && only !== name) continue
    const c0 = cpu(), t0 = performance.now()
    await (process.env.MRT ? rt.runPromise : Effect.runPromise)(Effect.gen(function*() {
      if (process.env.SERIAL) { for (let i = 0; i < N / 4; i++) yield* op(i) }
      else {
        for (let i = 0; i < N; i += 64) {
          yield* Effect.forEach(slots, (w) => op(i + w), { concurrency: 64, discard: true })
        }
      }
    }))
    console.log(
      name.padEnd(22),
      ((cpu() - c0) / N).toFixed(1),
      "µs cpu/op",
      (N / (performance.now() - t0) * 1000).toFixed(0),
      "ops/s"
    )
  }
  const c0 = cpu(), t0 = performance.now()
  if (process.env.SERIAL) { for (let i = 0; i < N / 4; i++) await evalsha(raw, i) }
  else {
    for (let i = 0; i < N; i += 64) await Promise.all(slots.map((w) => evalsha(raw, i + w)))
  }
  console.log(
    "raw promise".padEnd(22),
    ((cpu() - c0) / N).toFixed(1),
    "µs cpu/op",
    (N / (performance.now() - t0) * 1000).toFixed(0),
    "ops/s"
  )
}
await rt.dispose()
raw.disconnect()
auto.disconnect()
safe.disconnect()
await server.close()
