-- gcra check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial. A blocked key (KEYS block) is denied until the block ends.
--! strategy: gcra
--! role: check
--! keys: key block
--! argv: now periodMs limit burst cost fence
--! uses: clock gcra block
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return tk_block_denial(gcra_peek(KEYS[1], now, a), blockEnd, now) end
local decision, write = gcra_check(KEYS[1], now, a, tonumber(ARGV[5]))
if write then write() end
return decision
