-- quota check (the ThrottleKit core's quota script, calendar and fixed cadences): consumes `cost` and replies
-- {allowed, limit, remaining, resetAt, retryAfterMs}. mode: 1 = calendar-month, 2 = calendar-week,
-- 3 = calendar-day, 4 = fixed; periodMs and anchor serve fixed (0 otherwise), offsetMs (the fixed UTC offset,
-- in ms) and weekStartsOn (0 = Sunday) the calendar cadences. Nothing is written on a denial.
--! strategy: quota
--! role: check
--! keys: key block
--! argv: now limit cost mode periodMs anchor offsetMs weekStartsOn fence
--! uses: clock quota block
if tk_fenced(ARGV[9]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = qt_params(tonumber(ARGV[2]), ARGV, 4)
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return tk_block_denial(qt_peek(KEYS[1], now, a), blockEnd, now) end
local decision, write = qt_check(KEYS[1], now, a, tonumber(ARGV[3]))
if write then write() end
return decision
