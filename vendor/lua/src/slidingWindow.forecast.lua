-- slidingWindow forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: slidingWindow
--! role: forecast
--! keys: key block
--! argv: now windowMs limit buckets cost
--! uses: clock slidingWindow block
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
return tk_forecast_unless_blocked(KEYS[2], now, sw_forecast(KEYS[1], now, a, tonumber(ARGV[5])))
