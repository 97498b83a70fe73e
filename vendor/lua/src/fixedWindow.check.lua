-- fixedWindow check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial. A blocked key (KEYS block) is denied until the block ends.
--! strategy: fixedWindow
--! role: check
--! keys: key block
--! argv: now limit windowMs cost fence
--! uses: clock fixedWindow block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { limit = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return tk_block_denial(fw_peek(KEYS[1], now, a), blockEnd, now) end
local decision, write = fw_check(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
