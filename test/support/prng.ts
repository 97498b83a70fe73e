/**
 * A small seeded PRNG for randomized tests, so a failing run replays from its seed.
 */

/**
 * mulberry32 over `seed`: `next` in [0, 1), `int` in [lo, hi] inclusive, `pick` one of `items`, `hex` a
 * string of `length` hex digits. Every helper draws from the same stream.
 */
export const prng = (seed: number) => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1))
  const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(next() * items.length)]!
  const hex = (length: number): string => Array.from({ length }, () => "0123456789abcdef"[int(0, 15)]).join("")
  return { next, int, pick, hex }
}

/** A generator made by `prng`. */
export type Rng = ReturnType<typeof prng>
