/**
 * What the Memory door's key tables do when full of live keys (`OnFull`), and the report of it
 * (`FullTable`): the choice a `MemoryBackend` layer takes as its `onFull` option.
 *
 * @since 0.2.0
 */

/**
 * What a key table does when a new key arrives and a sweep finds more than `maxKeys` keys still live
 * (none of them equivalent to a fresh key, so none can be forgotten without changing a decision):
 *
 * - `"grow"` (the default): the new key is stored and the table grows past `maxKeys`. No decision
 *   changes; memory is bounded by the keys really live (a key stays live only until it reads fresh
 *   again: its window over, its bucket refilled, its TAT reached), since each sweep drops every key that
 *   went fresh. Reported once per table (`onTableFull`).
 * - `"deny"`: the table never holds more than `maxKeys` keys; a new key whose check would be allowed is
 *   denied instead (`remaining` 0, `retryAfterMs` a hint of when room comes back) and stores nothing.
 *   Existing keys decide as ever. Fail-closed for new keys: whoever can mint live keys can lock new
 *   users out, so choose it only where a hard memory ceiling matters more than that.
 *
 * @since 0.2.0
 * @category models
 */
export type OnFull = "grow" | "deny"

/**
 * The report of a table full of live keys (once per table): the policy, its `maxKeys`, how many keys
 * the table held when it first went past `maxKeys` (`"grow"`) or first refused a new key (`"deny"`),
 * and which of the two it does.
 *
 * @since 0.2.0
 * @category models
 */
export interface FullTable {
  readonly policy: string
  readonly maxKeys: number
  readonly keys: number
  readonly onFull: OnFull
}
