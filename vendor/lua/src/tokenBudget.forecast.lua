-- Token budget forecast: {spendableNow, nextReplenishAt, fullAt} for debits of `tokens`; writes nothing.
--! strategy: tokenBudget
--! role: forecast
--! keys: key
--! argv: now budget windowMs tokens
--! uses: clock tokenBudgetRead
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tbud_forecast(KEYS[1], now, a, tonumber(ARGV[4]))
