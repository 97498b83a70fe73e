-- tokenBucket check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial.
--! strategy: tokenBucket
--! role: check
--! keys: key
--! argv: now capacity refillPerSec cost fence
--! uses: clock tokenBucket
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { capacity = tonumber(ARGV[2]), refillPerSec = tonumber(ARGV[3]) }
local decision, write = tb_check(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
