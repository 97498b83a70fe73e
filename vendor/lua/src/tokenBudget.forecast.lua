-- Token budget forecast: {spendableNow, nextReplenishAt, fullAt} for debits of `tokens`; writes nothing.
--! strategy: tokenBudget
--! role: forecast
--! keys: key block
--! argv: now budget windowMs tokens
--! uses: clock tokenBudgetRead block
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tk_forecast_unless_blocked(KEYS[2], now, tbud_forecast(KEYS[1], now, a, tonumber(ARGV[4])))
