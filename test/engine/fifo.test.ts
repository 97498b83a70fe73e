/**
 * The engine's FIFO queue (`src/engine/fifo.ts`) against a plain array as the model: any sequence of
 * pushes, shifts, pops and clears gives the same items in the same order, across the compactions a
 * long run triggers (thousands of items taken from the front).
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { Fifo } from "../../src/engine/fifo.js"

type Op =
  | { readonly op: "push"; readonly n: number }
  | { readonly op: "shift"; readonly n: number }
  | { readonly op: "pop" }
  | { readonly op: "clear" }

const ops: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant("push" as const), n: fc.integer({ min: 1, max: 700 }) }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant("shift" as const), n: fc.integer({ min: 1, max: 700 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: "pop" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) }
)

describe("Fifo", () => {
  it("gives what an array used as a queue gives, in order, across compactions", () => {
    fc.assert(
      fc.property(fc.array(ops, { maxLength: 60 }), (script) => {
        const fifo = new Fifo<number>()
        const model: Array<number> = []
        let next = 0
        for (const step of script) {
          if (step.op === "push") {
            for (let i = 0; i < step.n; i++) {
              fifo.push(next)
              model.push(next++)
            }
          } else if (step.op === "shift") {
            for (let i = 0; i < step.n; i++) expect(fifo.shift()).toBe(model.shift())
          } else if (step.op === "pop") {
            fifo.pop()
            model.pop()
          } else {
            fifo.clear()
            model.length = 0
          }
          expect(fifo.size).toBe(model.length)
          expect(fifo.peek()).toBe(model[0])
          expect(fifo.last()).toBe(model[model.length - 1])
        }
        const rest: Array<number> = []
        fifo.forEach((item) => rest.push(item))
        expect(rest).toEqual(model)
      }),
      { numRuns: 200 }
    )
  })
})
