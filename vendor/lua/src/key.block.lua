-- key block (this package's admin role): blocks a limiter's or budget's key for `durationMs` from `now`:
-- KEYS block holds the block's end (epoch-ms), expiring `durationMs` after it was set (relative, so a block
-- timed on Effect's clock also expires on the Redis server's). A later block replaces an earlier one; the
-- key's state is not touched. Fenced like a consuming script (a call given up on never applies). Replies
-- with the block's end.
--! strategy: key
--! role: block
--! keys: block
--! argv: now durationMs fence
--! uses: clock
if tk_fenced(ARGV[3]) then return { -2 } end
local now = tk_now(ARGV[1])
local duration = tonumber(ARGV[2])
local ends = now + duration
redis.call('SET', KEYS[1], tk_fmt(ends), 'PX', tk_fmt(duration))
return ends
