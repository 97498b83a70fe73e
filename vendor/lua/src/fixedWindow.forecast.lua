-- fixedWindow forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: fixedWindow
--! role: forecast
--! keys: key block
--! argv: now limit windowMs cost
--! uses: clock fixedWindow block
local now = tk_now(ARGV[1])
local a = { limit = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tk_forecast_unless_blocked(KEYS[2], now, fw_forecast(KEYS[1], now, a, tonumber(ARGV[4])))
