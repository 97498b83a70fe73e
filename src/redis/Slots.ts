/**
 * Redis Cluster key slots: which of the 16384 slots a key belongs to, as the cluster computes it (CRC16,
 * XMODEM variant, of the key's hash tag if it has one, else of the whole key, modulo 16384). Keys of one
 * slot live on one node, which is what lets a batch be split into one pipeline per node.
 *
 * @since 0.3.0
 * @internal
 */

/** The number of slots of a Redis Cluster. */
export const SLOT_COUNT = 16384

/** CRC16 with polynomial 0x1021, initial value 0, no reflection (the cluster's hash), one byte at a time. */
const CRC16_TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256)
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8
    for (let bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    }
    table[byte] = crc
  }
  return table
})()

const encoder = new TextEncoder()

/** The slot of the UTF-8 bytes of `text` (any characters). */
const slotOfBytes = (text: string): number => {
  let crc = 0
  for (const byte of encoder.encode(text)) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[(crc >> 8) ^ byte]!
  return crc % SLOT_COUNT
}

/**
 * The slot of `key`: only the part between the first `{` and the next `}` is hashed when that part is
 * not empty (the hash tag), so keys sharing a tag share a slot. The braces are ASCII, so they sit at the
 * same places in the string as in its UTF-8 bytes; an ASCII part is hashed as it is (its characters are
 * its bytes), any other through its UTF-8 encoding.
 */
export const slotOf = (key: string): number => {
  let from = 0
  let to = key.length
  const open = key.indexOf("{")
  if (open >= 0) {
    const close = key.indexOf("}", open + 1)
    if (close > open + 1) {
      from = open + 1
      to = close
    }
  }
  let crc = 0
  for (let i = from; i < to; i++) {
    const code = key.charCodeAt(i)
    if (code >= 0x80) return slotOfBytes(key.slice(from, to))
    crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[(crc >> 8) ^ code]!
  }
  return crc % SLOT_COUNT
}

/** Whether `key` has a hash tag: a `{` followed later by a `}` with at least one character between. */
const hasHashTag = (key: string): boolean => {
  const open = key.indexOf("{")
  if (open < 0) return false
  const close = key.indexOf("}", open + 1)
  return close > open + 1
}

/** A short tag of each slot asked for (`slotTagOf`), found once by search. */
const slotTags = new Map<number, string>()

/** A short string without braces whose slot is `slot` (the first base-36 counter that lands there). */
const slotTagOf = (slot: number): string => {
  const known = slotTags.get(slot)
  if (known !== undefined) return known
  for (let n = 0;; n++) {
    const tag = n.toString(36)
    if (slotOf(tag) === slot) {
      slotTags.set(slot, tag)
      return tag
    }
  }
}

/**
 * The key holding an admin block of the state key `stateKey`, in `stateKey`'s slot (one script reads
 * both, on a cluster too): `stateKey:block` when `stateKey` has a hash tag (the same tag), else
 * `{stateKey}:block` (the tag is the whole state key, hashed as the cluster hashes an untagged key). A
 * state key with a `}` but no tag cannot be a tag itself: its block key is `{t}:block:stateKey`, with `t`
 * a short tag found for its slot.
 */
export const blockKeyOf = (stateKey: string): string => {
  if (hasHashTag(stateKey)) return stateKey + ":block"
  if (stateKey.indexOf("}") < 0) return "{" + stateKey + "}:block"
  return "{" + slotTagOf(slotOf(stateKey)) + "}:block:" + stateKey
}
