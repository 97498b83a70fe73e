-- tokenBudget reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: tokenBudget
--! role: reward
--! keys: key block
--! argv: now budget windowMs units fence
--! uses: clock tokenBudgetRead reward block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local units = tonumber(ARGV[4])
rw_count_down(KEYS[1], math.floor(now / a.windowMs) * a.windowMs, units)
return tk_unless_blocked(KEYS[2], now, tbud_peek(KEYS[1], now, a))
