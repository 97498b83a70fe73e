-- gcra forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: gcra
--! role: forecast
--! keys: key block
--! argv: now periodMs limit burst cost
--! uses: clock gcra block
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
return tk_forecast_unless_blocked(KEYS[2], now, gcra_forecast(KEYS[1], now, a, tonumber(ARGV[5])))
