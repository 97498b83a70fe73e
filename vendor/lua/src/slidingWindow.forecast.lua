-- slidingWindow forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: slidingWindow
--! role: forecast
--! keys: key
--! argv: now windowMs limit buckets cost
--! uses: clock slidingWindow
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
return sw_forecast(KEYS[1], now, a, tonumber(ARGV[5]))
