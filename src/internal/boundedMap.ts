/**
 * An insertion-ordered `Map` kept to at most `maxKeys` entries: setting a key moves it to the newest
 * place, and past the bound the oldest entry is dropped. Shared by the tables that remember per-key
 * state without a sweep (the outbound limiter's learned pauses, the two-tier credits).
 *
 * @since 0.3.0
 * @internal
 */

/**
 * Sets `key` to `value` as the newest entry of `entries`, dropping the oldest one when more than
 * `maxKeys` are held.
 *
 * @since 0.3.0
 * @internal
 */
export const setBounded = <A>(entries: Map<string, A>, key: string, value: A, maxKeys: number): void => {
  entries.delete(key)
  entries.set(key, value)
  if (entries.size > maxKeys) {
    const oldest = entries.keys().next()
    if (oldest.done !== true) entries.delete(oldest.value)
  }
}
