-- slidingWindowLog check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial.
--! strategy: slidingWindowLog
--! role: check
--! keys: key
--! argv: now windowMs limit cost fence
--! uses: clock slidingWindowLog
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]) }
local decision, write = swl_check(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
