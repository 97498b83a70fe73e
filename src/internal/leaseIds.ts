/**
 * Lease ids: 128 random bits each, in hex, drawn from a pooled buffer refilled 256 ids at a time, so an
 * acquire pays a slice of a buffer instead of a call into the system's random source. As unguessable
 * as one `randomBytes(16)` per id.
 *
 * @since 0.3.0
 */
import { randomFillSync } from "node:crypto"

const ID_BYTES = 16
const POOLED_IDS = 256

/**
 * A minter of random lease ids (each minter has its own pool).
 *
 * @since 0.3.0
 */
export const makeLeaseIds = (): () => string => {
  const pool = Buffer.allocUnsafe(ID_BYTES * POOLED_IDS)
  let next = pool.length
  return () => {
    if (next === pool.length) {
      randomFillSync(pool)
      next = 0
    }
    const start = next
    next += ID_BYTES
    return pool.toString("hex", start, next)
  }
}
