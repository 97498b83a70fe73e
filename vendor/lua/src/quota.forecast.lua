-- quota forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.
--! strategy: quota
--! role: forecast
--! keys: key block
--! argv: now limit cost mode periodMs anchor offsetMs weekStartsOn
--! uses: clock quota block
local now = tk_now(ARGV[1])
local a = qt_params(tonumber(ARGV[2]), ARGV, 4)
return tk_forecast_unless_blocked(KEYS[2], now, qt_forecast(KEYS[1], now, a, tonumber(ARGV[3])))
