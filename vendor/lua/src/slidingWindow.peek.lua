-- slidingWindow peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: slidingWindow
--! role: peek
--! keys: key
--! argv: now windowMs limit buckets
--! uses: clock slidingWindow
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
return sw_peek(KEYS[1], now, a)
