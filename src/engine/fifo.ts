/**
 * A first-in first-out queue over one array and a head index: O(1) in and out without `Array#shift`'s
 * copy. The slot the head leaves is emptied at once, so the queue never keeps a taken item alive (a queue
 * that kept them until its next compaction held about a thousand finished Redis calls, each with its
 * batch, through every young collection: 3 ms pauses instead of under 1 ms). The array is reused when
 * the queue empties and compacted when the taken part is both large and most of it.
 *
 * @since 0.3.0
 * @internal
 */

/** Taken slots at the front that a compaction waits for (and they must be at least half the array). */
const COMPACT_AFTER = 1024

/**
 * A FIFO queue of `A`.
 *
 * @since 0.3.0
 * @internal
 */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  /** How many items are queued. */
  get size(): number {
    return this.items.length - this.head
  }

  /** Queues `item` last. */
  push(item: A): void {
    this.items.push(item)
  }

  /** The first item, if any, left in place. */
  peek(): A | undefined {
    return this.items[this.head]
  }

  /** The last item, if any, left in place. */
  last(): A | undefined {
    return this.head < this.items.length ? this.items[this.items.length - 1] : undefined
  }

  /** Removes and returns the first item, if any. */
  shift(): A | undefined {
    const items = this.items
    if (this.head === items.length) return undefined
    const first = items[this.head]
    items[this.head++] = undefined
    if (this.head === items.length) {
      items.length = 0
      this.head = 0
    } else if (this.head >= COMPACT_AFTER && this.head * 2 >= items.length) {
      items.splice(0, this.head)
      this.head = 0
    }
    return first
  }

  /** Removes the last item, if any. */
  pop(): void {
    if (this.head < this.items.length) this.items.pop()
  }

  /** Removes every item. */
  clear(): void {
    this.items = []
    this.head = 0
  }

  /** Replaces the queue's items with `items`, in their order (the array is the queue's from now on). */
  reset(items: Array<A>): void {
    this.items = items
    this.head = 0
  }

  /** Calls `f` with each item, first to last. */
  forEach(f: (item: A) => void): void {
    const items = this.items
    for (let i = this.head; i < items.length; i++) f(items[i]!)
  }
}
