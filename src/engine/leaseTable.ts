/**
 * The lease table: held leases in a dense array of slots, each named by an id that encodes its slot
 * (`leaseIds.ts`), so finding a lease by id is a parse, an array index and one string compare,
 * whatever the number held, instead of hashing the id into a table as large as the leases held. Freed
 * slots go on a free list and are taken again last-freed first (the slot most likely still in cache); once
 * most of the table is free, the free slots at its end leave it. A slot's record is reused across its
 * leases; its generation counts them, so a reference to an earlier lease of the record (a queued expiry)
 * is recognised as stale, and an earlier lease's id no longer matches (the new lease has new random bits).
 *
 * One table may serve several owners (the Memory store's admitters, across reloads): each slot names its
 * owner, so an id alone routes to the admitter that holds it.
 *
 * @since 0.3.0
 */
import { makeSlotLeaseIds, slotOfLeaseId } from "./leaseIds.js"

/**
 * One slot of a lease table and the lease it holds (`owner` undefined when free).
 *
 * @since 0.3.0
 * @category models
 */
export class LeaseSlot<Owner> {
  /** The held lease's id ("" when free). */
  id = ""
  owner: Owner | undefined = undefined
  acquiredAt = 0
  expiresAt = 0
  /** How many leases this slot has held before the current one. */
  generation = 0
  /** Whether the id was the caller's (not minted by the table). */
  named = false
  constructor(readonly slot: number) {}
}

/** How many free slots a table keeps in any case. */
const TRIM_ABOVE = 1024

/** The minter every table without its own shares. */
const sharedMint = makeSlotLeaseIds()

/**
 * A table of held leases by slot.
 *
 * @since 0.3.0
 * @category models
 */
export class LeaseTable<Owner> {
  private readonly slots: Array<LeaseSlot<Owner>> = []
  private readonly free: Array<number> = []

  constructor(
    /** Mints the id of a lease in a slot (random bits over the slot index). */
    private readonly mint: (slot: number) => string = sharedMint
  ) {}

  /** How many slots the table has, held and free. */
  get capacity(): number {
    return this.slots.length
  }

  /**
   * Holds a lease for `owner` in a free slot, under `id` when given (a caller's id: the table will not find
   * it by id, its owner keeps it), else under a freshly minted id.
   */
  take(owner: Owner, acquiredAt: number, expiresAt: number, id?: string): LeaseSlot<Owner> {
    const slots = this.slots
    let lease: LeaseSlot<Owner> | undefined
    // The free list may name slots trimmed since they were freed: past the end, they are passed over. (The
    // table grows only once the list is empty, so a slot it names inside the table is free.)
    for (let free = this.free.pop(); free !== undefined; free = this.free.pop()) {
      if (free < slots.length) {
        lease = slots[free]!
        break
      }
    }
    if (lease === undefined) {
      lease = new LeaseSlot<Owner>(slots.length)
      slots.push(lease)
    }
    lease.owner = owner
    lease.acquiredAt = acquiredAt
    lease.expiresAt = expiresAt
    lease.named = id !== undefined
    lease.id = id ?? this.mint(lease.slot)
    return lease
  }

  /**
   * Frees `lease`'s slot: its id names nothing from now on. Once most of the table is free (after a
   * burst), the free slots at its end leave it, so a drained table gives its memory back; below that its
   * slots are kept for the next leases.
   */
  release(lease: LeaseSlot<Owner>): void {
    lease.id = ""
    lease.owner = undefined
    lease.named = false
    lease.generation++
    const free = this.free
    free.push(lease.slot)
    if (free.length > TRIM_ABOVE && 2 * free.length > this.slots.length) this.trim()
  }

  /** Drops the free slots at the end of the table (the free list's entries for them are passed over). */
  private trim(): void {
    const slots = this.slots
    while (slots.length > 0 && slots[slots.length - 1]!.owner === undefined) slots.pop()
    if (slots.length === 0) this.free.length = 0
  }

  /** The held lease whose minted id is `id`, if any. */
  find(id: string): LeaseSlot<Owner> | undefined {
    const slot = slotOfLeaseId(id)
    if (slot < 0 || slot >= this.slots.length) return undefined
    const lease = this.slots[slot]!
    return lease.id === id && !lease.named ? lease : undefined
  }

  /** The owner of the held lease whose minted id is `id`, if any. */
  ownerOf(id: string): Owner | undefined {
    return this.find(id)?.owner
  }
}
