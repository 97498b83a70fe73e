/**
 * Insurance on the server (`serve --insurance-instances N` / `--insurance-share S`, `ThrottleKitServer`'s
 * Redis store `insurance`): a real `redis-server` frozen (SIGSTOP) while a gRPC client keeps checking;
 * the server keeps answering (no UNAVAILABLE) from its share, `/metrics` counts exactly the answers it
 * decided alone and says when the store is unreachable, and the server goes back to Redis after SIGCONT
 * without a restart. Then the flags.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import * as PolicyFile from "../../src/PolicyFile.js"
import * as Cli from "../../src/server/Cli.js"
import { valueOf } from "../support/prometheus.js"
import { redisServer } from "../support/redisServer.js"
import { servedWithMetrics } from "../support/servedWithMetrics.js"

const config = `
limiters:
  api:
    strategy: gcra
    limit: 40
    period: 1h
    burst: 40
`

describe("insurance on the server", () => {
  it.live(
    "Redis frozen: answers continue from the share, counted on /metrics; back to Redis after SIGCONT",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = yield* redisServer
        const policies = yield* PolicyFile.parse(config, "test")
        const { client, scrape } = yield* servedWithMetrics({
          policies,
          store: { kind: "redis", redis: redis.url, timeoutMs: 200, insurance: { instances: 4, probeIntervalMs: 100 } }
        })

        for (let i = 0; i < 5; i++) expect((yield* client.check("api", "k")).limit).toBe(40)
        expect(valueOf(yield* scrape, "throttlekit_store_degraded", {})).toBe(0)

        redis.pause()
        const during = yield* Effect.forEach(Array.from({ length: 30 }), () => client.check("api", "k"))
        // Every call answered (none UNAVAILABLE), against the share: 40 / 4 = 10 (a burst of 10), then denied.
        expect(during.every((d) => d.limit === 10)).toBe(true)
        expect(during.filter((d) => d.allowed).length).toBe(10)
        const page = yield* scrape
        expect(valueOf(page, "throttlekit_degraded_answers_total", { policy: "api" })).toBe(30)
        expect(valueOf(page, "throttlekit_store_degraded", {})).toBe(1)
        // The Monitor tap records them as decisions (they are: the share's).
        expect(valueOf(page, "throttlekit_denied_total", { policy: "api" })).toBe(20)

        redis.resume()
        const back = yield* Effect.retry(
          Effect.flatMap(client.check("api", "k"), (d) => d.limit === 40 ? Effect.succeed(d) : Effect.fail("share")),
          Schedule.spaced("20 millis").pipe(Schedule.upTo("15 seconds"))
        )
        // Redis's count: the 5 before and this one; what the share decided never reached Redis.
        expect(back.remaining).toBe(34)
        const after = yield* scrape
        expect(valueOf(after, "throttlekit_store_degraded", {})).toBe(0)
      })),
    30_000
  )

  it.effect("the flags: --insurance-instances N or --insurance-share S, one of them, with --store redis", () =>
    Effect.gen(function*() {
      const storeOf = (...flags: Array<string>) =>
        Effect.map(
          Cli.parse(["serve", "-c", "p.yaml", "--store", "redis", ...flags]),
          (command) =>
            command._tag === "Serve" && command.args.store.kind === "redis" ? command.args.store.insurance : "none"
        )
      expect(yield* storeOf()).toBeUndefined()
      expect(yield* storeOf("--insurance-instances", "3")).toEqual({ instances: 3 })
      expect(yield* storeOf("--insurance-share", "0.25")).toEqual({ share: 0.25 })
      expect(yield* storeOf("--insurance-share", "1")).toEqual({ share: 1 })
      const reason = (...flags: Array<string>) => Effect.map(Effect.flip(Cli.parse(flags)), (e) => e.reason)
      const base = ["serve", "-c", "p.yaml"]
      expect(yield* reason(...base, "--store", "redis", "--insurance-instances", "0"))
        .toBe("--insurance-instances must be a whole number from 1 to 10000")
      for (const bad of ["0", "1.5", "-0.2", "abc", ".", "0.0"]) {
        expect(yield* reason(...base, "--store", "redis", "--insurance-share", bad))
          .toBe("--insurance-share must be a number greater than 0 and at most 1 (e.g. 0.25)")
      }
      expect(yield* reason(...base, "--store", "redis", "--insurance-instances", "2", "--insurance-share", "0.5"))
        .toBe("--insurance-instances and --insurance-share both size the local share; give one")
      expect(yield* reason(...base, "--store", "memory", "--insurance-instances", "2"))
        .toBe("--insurance-instances needs --store redis (it was given with --store memory)")
    }))
})
