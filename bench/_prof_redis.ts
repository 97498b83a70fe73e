import { Effect, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import * as RedisBackend from "../src/layers/RedisBackend.js"
import { evalArgs, type Reply } from "../src/redis/ScriptRunner.js"
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
await raw.script("LOAD", script.text)
const mode = process.argv[2] ?? "both"
const N = 20000
const slots = Array.from({ length: 64 }, (_, i) => i)
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system)
}
for (let r = 0; r < 3; r++) {
  if (mode !== "raw") {
    const c0 = cpu(), t0 = performance.now()
    await rt.runPromise(Effect.gen(function*() {
      for (let i = 0; i < N; i += 64) {
        yield* Effect.forEach(slots, (w) => limiter.check(POLICY, keyOf(i + w)), { concurrency: 64, discard: true })
      }
    }))
    console.log(
      "ours",
      ((cpu() - c0) / N).toFixed(1),
      "µs cpu/op",
      (N / (performance.now() - t0) * 1000).toFixed(0),
      "ops/s"
    )
  }
  if (mode !== "ours") {
    const c0 = cpu(), t0 = performance.now()
    for (let i = 0; i < N; i += 64) {
      await Promise.all(
        slots.map((w) =>
          raw.evalsha(script.sha1, ...evalArgs({ script, keys: ["bench:" + keyOf(i + w)], argv })) as Promise<Reply>
        )
      )
    }
    console.log(
      "raw ",
      ((cpu() - c0) / N).toFixed(1),
      "µs cpu/op",
      (N / (performance.now() - t0) * 1000).toFixed(0),
      "ops/s"
    )
  }
}
await rt.dispose()
raw.disconnect()
await server.close()
