-- quota reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: quota
--! role: reward
--! keys: key block
--! argv: now limit mode periodMs anchor offsetMs weekStartsOn units fence
--! uses: clock quota reward block
if tk_fenced(ARGV[9]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = qt_params(tonumber(ARGV[2]), ARGV, 3)
local units = tonumber(ARGV[8])
local start = qt_period(now, a)
rw_count_down(KEYS[1], start, units)
return tk_unless_blocked(KEYS[2], now, qt_peek(KEYS[1], now, a))
