-- slidingWindow check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial.
--! strategy: slidingWindow
--! role: check
--! keys: key
--! argv: now windowMs limit cost buckets fence
--! uses: clock slidingWindow
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[5]) }
local decision, write = sw_check(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
