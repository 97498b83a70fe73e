-- slidingWindow check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial. A blocked key (KEYS block) is denied until the block ends.
--! strategy: slidingWindow
--! role: check
--! keys: key block
--! argv: now windowMs limit cost buckets fence
--! uses: clock slidingWindow block
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[5]) }
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return tk_block_denial(sw_peek(KEYS[1], now, a), blockEnd, now) end
local decision, write = sw_check(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
