/**
 * Shadow mode inside a multi-check (`checkAll`): a shadowed dimension is decided and consumed as usual but
 * never denies the request; an enforced dimension's denial is the verdict, consumes nothing, and is the one
 * that binds. Memory door, TestClock (the windows never roll over).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as MemoryBackend from "../../src/layers/MemoryBackend.js"
import type { Policy } from "../../src/Policy.js"

const window = (name: string, limit: number, shadow: boolean): Policy => ({
  kind: "limiter",
  name,
  prefix: name,
  maxKeys: 100,
  strategy: { kind: "fixedWindow", limit, windowMs: 3_600_000 },
  ...(shadow ? { shadow: true } : {})
})

describe("checkAll with shadowed dimensions", () => {
  it.scoped("a shadowed dimension never denies; an enforced one decides, consuming nothing when it denies", () =>
    Effect.gen(function*() {
      const limiter = yield* MemoryBackend.make({
        policies: [window("enforced", 3, false), window("trial", 1, true)]
      })
      const both = [{ policy: "enforced", key: "k" }, { policy: "trial", key: "k" }]
      const remaining = Effect.all([limiter.peek("enforced", "k"), limiter.peek("trial", "k")]).pipe(
        Effect.map((ds) => ds.map((d) => d.remaining))
      )

      // 1st: both allow, both consumed.
      const first = yield* limiter.checkAll(both)
      expect([first.allowed, first.decisions.map((d) => d.shadowed)]).toEqual([true, [false, false]])
      expect(yield* remaining).toEqual([2, 0])

      // 2nd: only the shadowed dimension denies: allowed, the enforced one consumed, the trial marked shadowed.
      const second = yield* limiter.checkAll(both)
      expect(second.allowed).toBe(true)
      expect(second.decisions.map((d) => [d.allowed, d.shadowed])).toEqual([[true, false], [true, true]])
      expect(second.binding).toBe(0)
      expect(yield* remaining).toEqual([1, 0])

      // Drain the enforced one, then an enforced denial is the verdict: nothing consumed, and it binds.
      yield* limiter.check("enforced", "k")
      const third = yield* limiter.checkAll(both)
      expect(third.allowed).toBe(false)
      expect(third.binding).toBe(0)
      expect(third.decisions.map((d) => [d.allowed, d.shadowed])).toEqual([[false, false], [true, true]])
      expect(yield* remaining).toEqual([0, 0])
    }))
})
