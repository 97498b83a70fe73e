/**
 * The soak (`npm run test:soak`, about a minute, not part of `npm test`): long runs through each door,
 * checking that memory stays flat and nothing leaks.
 * - memory door: a million distinct keys through a limiter and a meter capped at 10 000 keys, and
 *   100 000 admissions: with onFull "deny" and keys that count for 30 days, the tables hold the cap,
 *   forget no key still counting and refuse the rest; with the default "grow" and keys that read fresh
 *   within 250 ms, the sweeps keep the tables small. Either way the heap stays flat;
 * - Redis door: backends opened and closed again and again under load: no Redis connection, socket,
 *   timer or fiber is left behind, and the heap stays flat;
 * - Service door: clients opened and closed against one server, with calls, kept-alive admissions and
 *   health Watch streams: the server ends up with no extra fibers or sockets, and the heap stays flat.
 * The heap is measured after forced collections (the soak config runs with `--expose-gc`).
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Context, Duration, Effect, Layer, Stream, Supervisor } from "effect"
import { Redis } from "ioredis"
import { serverStream } from "../../src/grpc/client.js"
import { Health } from "../../src/grpc/generated/health_pb.js"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import * as RedisBackend from "../../src/layers/RedisBackend.js"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { MeterPolicy } from "../../src/Policy.js"
import * as ThrottleKitServer from "../../src/server/ThrottleKitServer.js"
import { RateLimiter, type RateLimiterService } from "../../src/services/RateLimiter.js"
import { fixedWindow, pool } from "../reliability/support.js"
import { LONG_WINDOW_MS } from "../support/longWindow.js"
import { redisServer } from "../support/redisServer.js"

const MiB = 1 << 20

const collect = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run the soak with `npm run test:soak` (it needs node --expose-gc)")
  gc()
  gc()
}

/** Heap in use after a full collection, in MiB. */
const heapMiB = (): number => {
  collect()
  return process.memoryUsage().heapUsed / MiB
}

const rssMiB = () => process.memoryUsage().rss / MiB

/** Live resources of this process by type (sockets, timers…), as Node reports them. */
const resources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

/** Samples of the heap; `flat` holds when the end is within `slackMiB` (or 25%) of the first sample. */
class HeapTrace {
  readonly samples: Array<number> = []
  readonly rss: Array<number> = []
  sample(): void {
    this.samples.push(heapMiB())
    this.rss.push(rssMiB())
  }
  describe(): string {
    return `heap MiB ${this.samples.map((n) => n.toFixed(1)).join(" → ")}; rss MiB ${
      this.rss.map((n) => n.toFixed(0)).join(" → ")
    }`
  }
  expectFlat(slackMiB = 16): void {
    const first = this.samples[0]!
    const last = this.samples[this.samples.length - 1]!
    expect(last - first).toBeLessThanOrEqual(Math.max(slackMiB, first * 0.25))
  }
}

/** Runs `effect` under a fiber tracker; returns its value and the fibers it left running. */
const tracked = <A, E, R>(effect: (live: Effect.Effect<number>) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const supervisor = yield* Supervisor.track
    const live = Effect.map(supervisor.value, (fibers) => fibers.length)
    const value = yield* Effect.supervised(effect(live), supervisor)
    // Fibers end asynchronously after their scope closed; give them a moment.
    yield* Effect.sleep("200 millis")
    return { value, leftRunning: yield* live }
  })

/** A meter of 5 tokens per `windowMs` holding at most 10 000 keys. */
const cappedMeter = (windowMs: number): MeterPolicy => ({
  kind: "meter",
  name: "meter",
  prefix: "meter",
  budget: 5,
  windowMs,
  maxKeys: 10_000,
  shared: false
})

/** How many of 8 admissions to `policy` are held at once (its ceiling, when nothing leaked). */
const admitAll = (backend: RateLimiterService, policy: string) =>
  Effect.scoped(
    Effect.map(
      Effect.forEach(Array.from({ length: 8 }), () => backend.admit(policy, "a")),
      (a) => a.filter((x) => x.held).length
    )
  )

const KEYS = 1_000_000

/**
 * A million distinct keys through a limiter "capped" (5 per `windowMs`, cost 2) and a meter, both
 * capped at 10 000 keys, and 100 000 admissions, on a Memory door with `onFull`; the heap sampled every
 * 100 000 keys. Returns the door, the trace and the newest key's decision, having checked the ceiling
 * of 8 slots survived and logged the run.
 */
const millionKeys = (onFull: MemoryBackend.OnFull, windowMs: number) =>
  Effect.gen(function*() {
    const capped = { ...fixedWindow("capped", 5, windowMs), maxKeys: 10_000 }
    const meter = cappedMeter(windowMs)
    const slots = pool("slots", 8)
    const backend = yield* MemoryBackend.make({ policies: [capped, meter, slots], onFull })
    const trace = new HeapTrace()
    const started = performance.now()
    let last = yield* backend.check(capped.name, "k0", 2)
    for (let i = 1; i < KEYS; i++) {
      last = yield* backend.check(capped.name, `k${i}`, 2)
      if (i % 5 === 0) yield* backend.debit(meter.name, `m${i}`, 2)
      if (i % 10 === 0) yield* Effect.scoped(backend.admit(slots.name, "a", { cost: 1 }))
      if (i % 100_000 === 0) trace.sample()
    }
    trace.sample()
    const seconds = (performance.now() - started) / 1000
    console.log(
      `[soak memory ${onFull}] ${KEYS} keys (+${KEYS / 5} meter keys, ${KEYS / 10} admissions) in ${
        seconds.toFixed(1)
      } s; ` + trace.describe()
    )
    expect(yield* admitAll(backend, slots.name)).toBe(8)
    return { backend, trace, last }
  })

describe("soak", () => {
  it.live(
    "memory door, onFull deny: a million distinct keys still counting stay within maxKeys and the heap flat",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { backend, last, trace } = yield* millionKeys("deny", LONG_WINDOW_MS)
        // Nothing still counting was forgotten (the window is 30 days): the oldest key kept its count;
        // the newest, refused by the full table, stored nothing.
        expect((yield* backend.peek("capped", "k0")).remaining).toBe(3)
        expect(last).toMatchObject({ allowed: false, remaining: 0 })
        expect((yield* backend.peek("capped", `k${KEYS - 1}`)).remaining).toBe(5)
        trace.expectFlat()
      })),
    { timeout: 120_000 }
  )

  it.live(
    "memory door, onFull grow: a million distinct keys that go fresh within 250 ms keep the heap flat",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { backend, last, trace } = yield* millionKeys("grow", 250)
        // The oldest key's window is long over (it reads fresh, wherever it is); the newest counted.
        expect((yield* backend.peek("capped", "k0")).remaining).toBe(5)
        expect(last).toMatchObject({ allowed: true, remaining: 3 })
        trace.expectFlat()
      })),
    { timeout: 120_000 }
  )

  it.live(
    "redis door: backends opened and closed under load leave no connection, socket, timer or fiber",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const admin = yield* Effect.acquireRelease(
          Effect.sync(() => new Redis(redis.url)),
          (client) => Effect.sync(() => client.disconnect())
        )
        const connections = Effect.map(
          Effect.promise(() => admin.call("CLIENT", "LIST") as Promise<string>),
          (list) => list.trim().split("\n").length
        )
        const policies = [fixedWindow("window", 1_000_000, 1000), pool("slots", 64)]
        yield* Effect.promise(() => admin.ping())
        const baseline = { connections: yield* connections, resources: resources() }
        const trace = new HeapTrace()
        const CYCLES = 40
        const { leftRunning } = yield* tracked(() =>
          Effect.forEach(Array.from({ length: CYCLES }, (_, i) => i), (cycle) =>
            Effect.scoped(Effect.gen(function*() {
              const limiter = Context.get(
                yield* Layer.build(RedisBackend.layer({ policies, redis: redis.url, leaseTtlMs: 400 })),
                RateLimiter
              )
              yield* Effect.forEach(Array.from({ length: 16 }, (_, f) => f), (f) =>
                Effect.gen(function*() {
                  for (let n = 0; n < 40; n++) yield* limiter.check("window", `c${cycle}-${f}-${n}`)
                  yield* Effect.scoped(Effect.zipRight(
                    limiter.admit("slots", `c${cycle}-${f}`, { keepAlive: true }),
                    Effect.sleep("250 millis")
                  ))
                }), { concurrency: "unbounded", discard: true })
              if (cycle % 10 === 0) trace.sample()
            })), { discard: true })
        )
        trace.sample()
        yield* Effect.sleep("300 millis")
        const after = { connections: yield* connections, resources: resources() }
        console.log(
          `[soak redis] ${CYCLES} backends x (640 checks + 16 kept-alive admissions); connections ${baseline.connections} → ${after.connections}; ` +
            `resources ${JSON.stringify(baseline.resources)} → ${JSON.stringify(after.resources)}; ` +
            `fibers left ${leftRunning}; ${trace.describe()}`
        )
        expect(after.connections).toBe(baseline.connections)
        expect(after.resources["TCPSocketWrap"] ?? 0).toBe(baseline.resources["TCPSocketWrap"] ?? 0)
        expect(after.resources["Timeout"] ?? 0).toBeLessThanOrEqual((baseline.resources["Timeout"] ?? 0) + 1)
        expect(leftRunning).toBe(0)
        trace.expectFlat()
      })),
    { timeout: 120_000 }
  )

  it.live(
    "service door: clients opened and closed against one server leave no fiber, stream or socket behind",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const policies = [fixedWindow("window", 1_000_000, 1000), pool("slots", 64)]
        const trace = new HeapTrace()
        const CYCLES = 40
        const baseline = resources()
        const result = yield* tracked((live) =>
          Effect.scoped(Effect.gen(function*() {
            const server = Context.get(
              yield* Layer.build(ThrottleKitServer.layer({ policies, leaseTtlMs: 400, host: "127.0.0.1", port: 0 })),
              ThrottleKitServer.GrpcServer
            )
            const serving = yield* live
            // The tracker sees the server's own fibers: a Watch stream held open is one more.
            const withWatch = yield* Effect.scoped(Effect.gen(function*() {
              const raw = yield* Effect.acquireRelease(
                Effect.sync(() => new grpc.Client(server.address, grpc.credentials.createInsecure())),
                (client) => Effect.sync(() => client.close())
              )
              const pull = yield* Stream.toPull(serverStream(raw, Health.method.watch, { service: "" }))
              yield* pull
              return yield* live
            }))
            expect(withWatch).toBeGreaterThan(serving)
            yield* Effect.forEach(Array.from({ length: CYCLES }, (_, i) => i), (cycle) =>
              Effect.scoped(Effect.gen(function*() {
                const limiter = Context.get(
                  yield* Layer.build(ServiceBackend.layer({ target: server.address, leaseTtlMs: 400 })),
                  RateLimiter
                )
                yield* Effect.forEach(Array.from({ length: 8 }, (_, f) => f), (f) =>
                  Effect.gen(function*() {
                    for (let n = 0; n < 40; n++) {
                      yield* limiter.check("window", `c${cycle}-${f}-${n}`)
                    }
                    yield* Effect.scoped(Effect.zipRight(
                      limiter.admit("slots", `c${cycle}-${f}`, { keepAlive: true }),
                      Effect.sleep("250 millis")
                    ))
                  }), { concurrency: "unbounded", discard: true })
                // A health Watch stream, read once and abandoned (cancelled on the wire).
                const raw = yield* Effect.acquireRelease(
                  Effect.sync(() =>
                    new grpc.Client(server.address, grpc.credentials.createInsecure())
                  ),
                  (client) =>
                    Effect.sync(() => client.close())
                )
                const first = yield* Stream.runHead(serverStream(raw, Health.method.watch, { service: "" }))
                expect(first._tag).toBe("Some")
                if (cycle % 10 === 0) trace.sample()
              })), { discard: true })
            yield* Effect.sleep("500 millis")
            return { serving, withWatch, afterCycles: yield* live, sockets: resources() }
          }))
        )
        trace.sample()
        yield* Effect.sleep(Duration.millis(300))
        const after = resources()
        console.log(
          `[soak service] ${CYCLES} clients x (320 checks + 8 kept-alive admissions + 1 Watch stream); server fibers ` +
            `${result.value.serving} while idle (${result.value.withWatch} with a Watch open) → ${result.value.afterCycles} after the clients left, ` +
            `${result.leftRunning} after it stopped; resources ${JSON.stringify(baseline)} → ` +
            `${JSON.stringify(result.value.sockets)} (server up) → ${JSON.stringify(after)}; ${trace.describe()}`
        )
        expect(result.value.afterCycles).toBe(result.value.serving)
        expect(result.leftRunning).toBe(0)
        expect(after["TCPSocketWrap"] ?? 0).toBe(baseline["TCPSocketWrap"] ?? 0)
        expect(after["TCPServerWrap"] ?? 0).toBe(baseline["TCPServerWrap"] ?? 0)
        trace.expectFlat()
      })),
    { timeout: 120_000 }
  )
})
