-- slidingWindowLog forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: slidingWindowLog
--! role: forecast
--! keys: key block
--! argv: now windowMs limit cost
--! uses: clock slidingWindowLog block
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]) }
return tk_forecast_unless_blocked(KEYS[2], now, swl_forecast(KEYS[1], now, a, tonumber(ARGV[4])))
