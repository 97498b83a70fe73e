/**
 * The shared deadline queue (`src/internal/deadlines.ts`) lets go of a call as soon as it leaves the
 * queue. It used to keep every call it had passed until a thousand had piled up: at 64 checks in flight
 * on the Redis door that held about 2 MB of finished calls (their batches, keys and resumptions) alive
 * through every young collection, and each collection copied them (3 ms pauses instead of under 1 ms).
 * The calls here are plain objects; a `WeakRef` tells whether anything still holds one after a full
 * collection (`gc` exposed at run time, as the Watch fan-out test does).
 */
import { describe, expect, it } from "@effect/vitest"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Deadlines, type Expiring } from "../../src/internal/deadlines.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

/** A call the test settles by hand; `expired` counts its expiries. */
class Call implements Expiring {
  settled = false
  expired = 0
  constructor(readonly deadline: number) {}
  expire(): void {
    this.expired++
    this.settled = true
  }
}

/** Lets the current job end (a `WeakRef` read in it keeps its target), then collects twice. */
const collect = async (): Promise<void> => {
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  gc()
}

/** How many of `refs` still reach their call. */
const alive = (refs: ReadonlyArray<WeakRef<Call>>): number => refs.filter((ref) => ref.deref() !== undefined).length

describe("Deadlines", () => {
  it("lets go of settled calls while later ones are still in flight", async () => {
    const deadlines = new Deadlines(60_000)
    const refs: Array<WeakRef<Call>> = []
    const track = (): Call => {
      const call = new Call(performance.now() + 60_000)
      deadlines.track(call)
      refs.push(new WeakRef(call))
      return call
    }
    // 600 calls answered in order, each after the next one started: the queue is never empty.
    let previous = track()
    for (let i = 0; i < 600; i++) {
      const next = track()
      previous.settled = true
      deadlines.settled()
      previous = next
    }
    const last = previous
    await collect()
    expect(alive(refs.slice(0, 600))).toBe(0)
    expect(last.settled).toBe(false)
    last.settled = true
    deadlines.settled()
  })

  it("lets go of expired calls while a later one is still in flight, and expires each once", async () => {
    const deadlines = new Deadlines(5)
    const refs: Array<WeakRef<Call>> = []
    const expiries = new Map<number, number>()
    const start = (i: number) => {
      const call = new Call(performance.now() + 5)
      const expire = call.expire.bind(call)
      call.expire = () => {
        expire()
        expiries.set(i, (expiries.get(i) ?? 0) + 1)
      }
      deadlines.track(call)
      refs.push(new WeakRef(call))
    }
    for (let i = 0; i < 50; i++) start(i)
    // Tracked after them with a far deadline (the queue only reads a call's own deadline).
    const later = new Call(performance.now() + 60_000)
    deadlines.track(later)
    await new Promise((resolve) => setTimeout(resolve, 40))
    await collect()
    expect([...expiries.values()].filter((n) => n === 1)).toHaveLength(50)
    expect(alive(refs)).toBe(0)
    expect(later.expired).toBe(0)
    later.settled = true
    deadlines.settled()
  })
})
