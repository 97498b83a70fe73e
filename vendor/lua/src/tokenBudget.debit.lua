-- Token budget debit: spends `tokens` of the window's budget; replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a refusal.
--! strategy: tokenBudget
--! role: debit
--! keys: key
--! argv: now budget windowMs tokens fence
--! uses: clock tokenBudget
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local decision, write = tbud_debit(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
