-- gcra check (CONTRACT.md §5): consumes `cost` and replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a denial.
--! strategy: gcra
--! role: check
--! keys: key
--! argv: now periodMs limit burst cost fence
--! uses: clock gcra
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
local decision, write = gcra_check(KEYS[1], now, a, tonumber(ARGV[5]))
if write then write() end
return decision
