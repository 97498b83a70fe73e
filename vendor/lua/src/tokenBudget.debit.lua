-- Token budget debit: spends `tokens` of the window's budget; replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a refusal.
--! strategy: tokenBudget
--! role: debit
--! keys: key block
--! argv: now budget windowMs tokens fence
--! uses: clock tokenBudget block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return { 0, a.budget, 0, blockEnd, blockEnd - now } end
local decision, write = tbud_debit(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
