/**
 * The Service door under load, against our real server on loopback: once its check RPCs in flight are
 * at the bound, further checks leave as `CheckMany` batches, and each still gets its own decision,
 * counted once. What goes on the wire is read with a grpc-js client interceptor (it only records the
 * method of each call).
 */
import { describe, expect, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect, Either } from "effect"
import * as ServiceBackend from "../../src/layers/ServiceBackend.js"
import type { Policy } from "../../src/Policy.js"
import { runningServer } from "./support.js"

const HOUR = 3_600_000

const policies: ReadonlyArray<Policy> = [
  {
    kind: "limiter",
    name: "window",
    prefix: "window",
    maxKeys: 100,
    strategy: { kind: "fixedWindow", limit: 100, windowMs: HOUR }
  },
  {
    kind: "limiter",
    name: "pairs",
    prefix: "pairs",
    maxKeys: 100,
    strategy: { kind: "fixedWindow", limit: 40, windowMs: HOUR }
  },
  { kind: "meter", name: "tokens", prefix: "tokens", maxKeys: 100, budget: 10, windowMs: HOUR, shared: false }
]

/** Our server over a fresh memory store, and a ServiceBackend to it whose calls are recorded by method. */
const setup = (coalesceChecks?: boolean) =>
  Effect.gen(function*() {
    const server = yield* runningServer({ policies })
    const methods: Array<string> = []
    const record: grpc.Interceptor = (options, nextCall) => {
      methods.push(options.method_definition.path.split("/").pop() ?? "")
      return new grpc.InterceptingCall(nextCall(options))
    }
    const limiter = yield* ServiceBackend.make({
      target: server.address,
      channelOptions: { interceptors: [record] },
      ...(coalesceChecks === undefined ? {} : { coalesceChecks })
    })
    const count = (method: string) => methods.filter((m) => m === method).length
    return { limiter, count }
  })

const allAtOnce = <A, E>(n: number, effect: (i: number) => Effect.Effect<A, E>) =>
  Effect.all(Array.from({ length: n }, (_, i) => Effect.either(effect(i))), { concurrency: "unbounded" })

describe("ServiceBackend check coalescing", () => {
  it.scoped("300 checks at once on a limit of 100: batched on the wire, exactly 100 allowed, each its own answer", () =>
    Effect.gen(function*() {
      const { count, limiter } = yield* setup()
      const results = yield* allAtOnce(300, () => limiter.check("window", "k"))
      const decisions = results.map((r) => Either.getOrThrow(r))
      const allowed = decisions.filter((d) => d.allowed)
      expect(allowed).toHaveLength(100)
      expect(allowed.map((d) => d.remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expect(count("CheckMany")).toBeGreaterThan(0)
      expect(count("Check") + count("CheckMany")).toBeLessThan(300)
      // The store saw every check once: the next one is denied.
      expect((yield* limiter.check("window", "k")).allowed).toBe(false)
    }))

  it.scoped("coalesceChecks: false sends one Check per check", () =>
    Effect.gen(function*() {
      const { count, limiter } = yield* setup(false)
      const results = yield* allAtOnce(150, () => limiter.check("window", "k"))
      expect(results.filter((r) => Either.isRight(r) && r.right.allowed)).toHaveLength(100)
      expect(count("Check")).toBe(150)
      expect(count("CheckMany")).toBe(0)
    }))

  it.scoped("checks of different policies and costs in flight together each count against their own limit", () =>
    Effect.gen(function*() {
      const { limiter } = yield* setup()
      const results = yield* allAtOnce(
        300,
        (i) => i % 2 === 0 ? limiter.check("window", "a") : limiter.check("pairs", "b", 2)
      )
      const allowedOf = (parity: number) =>
        results.filter((r, i) => i % 2 === parity && Either.isRight(r) && r.right.allowed).length
      expect(allowedOf(0)).toBe(100)
      expect(allowedOf(1)).toBe(20)
      expect(results.every(Either.isRight)).toBe(true)
    }))

  it.scoped("a batch for an unknown policy fails each of its checks with PolicyNotFound, and the others are untouched", () =>
    Effect.gen(function*() {
      const { limiter } = yield* setup()
      const results = yield* allAtOnce(
        120,
        (i) => i % 3 === 0 ? limiter.check("nope", "k") : limiter.check("window", `k${i}`)
      )
      results.forEach((result, i) => {
        if (i % 3 === 0) {
          expect(Either.isLeft(result) && result.left._tag).toBe("PolicyNotFound")
        } else {
          expect(Either.isRight(result) && result.right.allowed).toBe(true)
        }
      })
    }))

  it.scoped("a policy whose CheckMany is unimplemented falls back to one Check each, and is not batched again", () =>
    Effect.gen(function*() {
      const { count, limiter } = yield* setup()
      const first = yield* allAtOnce(60, () => limiter.check("tokens", "k"))
      for (const result of first) {
        expect(Either.isLeft(result) && result.left._tag).toBe("OperationNotSupported")
        if (Either.isLeft(result) && result.left._tag === "OperationNotSupported") {
          expect(result.left.operation).toBe("check")
        }
      }
      const batchesBefore = count("CheckMany")
      expect(batchesBefore).toBeGreaterThan(0)
      const second = yield* allAtOnce(60, () => limiter.check("tokens", "k"))
      expect(second.every((r) => Either.isLeft(r) && r.left._tag === "OperationNotSupported")).toBe(true)
      expect(count("CheckMany")).toBe(batchesBefore)
    }))
})
