-- tokenBucket forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: tokenBucket
--! role: forecast
--! keys: key block
--! argv: now capacity refillPerSec cost
--! uses: clock tokenBucket block
local now = tk_now(ARGV[1])
local a = { capacity = tonumber(ARGV[2]), refillPerSec = tonumber(ARGV[3]) }
return tk_forecast_unless_blocked(KEYS[2], now, tb_forecast(KEYS[1], now, a, tonumber(ARGV[4])))
