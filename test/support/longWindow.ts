/**
 * A fixed window no test outlives: 30 days. Fixed windows start at multiples of their length, so a test
 * that counts one key across calls on the real clock (or the Redis clock) with a window of a minute or an
 * hour sees it roll over whenever the test runs across the top of the minute or the hour.
 */
export const LONG_WINDOW_MS = 30 * 86_400_000
