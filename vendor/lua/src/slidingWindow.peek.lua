-- slidingWindow peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: slidingWindow
--! role: peek
--! keys: key block
--! argv: now windowMs limit buckets
--! uses: clock slidingWindow block
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
return tk_unless_blocked(KEYS[2], now, sw_peek(KEYS[1], now, a))
