/**
 * Lease ids that name their slot: 40 lowercase hex characters, a 32-bit tag then 128 random bits. The tag
 * is the slot index XOR the first 32 of the random bits, so every bit of the id reads as random while the
 * slot comes back from the id with a few shifts (`slotOfLeaseId`); whoever looks a slot up still compares
 * the whole id, so a guess or a stale id (its slot since reused under new random bits) names nothing.
 * The random bits come from a pooled buffer refilled 256 ids at a time, so a mint pays a slice of a
 * buffer instead of a call into the system's random source: as unguessable as one `randomBytes(16)` per id.
 *
 * @since 0.3.0
 */
import { randomFillSync } from "node:crypto"

const TAG_BYTES = 4
const RANDOM_BYTES = 16
const ID_BYTES = TAG_BYTES + RANDOM_BYTES
const POOLED_IDS = 256

/** How many characters a slot lease id has. */
const ID_LENGTH = 2 * ID_BYTES

/**
 * A minter of slot lease ids (each minter has its own pool, allocated at its first id): the id of a lease
 * in `slot` (an integer in [0, 2^32)).
 *
 * @since 0.3.0
 */
export const makeSlotLeaseIds = (): (slot: number) => string => {
  let pool: Buffer | undefined
  let next = 0
  return (slot) => {
    if (pool === undefined || next === pool.length) {
      pool ??= Buffer.allocUnsafe(ID_BYTES * POOLED_IDS)
      randomFillSync(pool)
      next = 0
    }
    const start = next
    next += ID_BYTES
    // The tag's 4 bytes of the pool were drawn too: they are overwritten by slot ^ the first random word.
    pool.writeUInt32BE((slot ^ pool.readUInt32BE(start + TAG_BYTES)) >>> 0, start)
    return pool.toString("hex", start, next)
  }
}

/** The value of a lowercase hex digit's char code, or -1. */
const hexValue = (code: number): number =>
  code >= 48 && code <= 57 ? code - 48 : code >= 97 && code <= 102 ? code - 87 : -1

/**
 * The slot a slot lease id names, or -1 when `id` is not shaped as one (40 lowercase hex characters).
 * Any well-shaped string names some slot: the caller compares the id held there.
 *
 * @since 0.3.0
 */
export const slotOfLeaseId = (id: string): number => {
  if (id.length !== ID_LENGTH) return -1
  let tag = 0
  let mask = 0
  for (let i = 0; i < 2 * TAG_BYTES; i++) {
    const t = hexValue(id.charCodeAt(i))
    const m = hexValue(id.charCodeAt(i + 2 * TAG_BYTES))
    if ((t | m) < 0) return -1
    tag = (tag << 4) | t
    mask = (mask << 4) | m
  }
  return (tag ^ mask) >>> 0
}
