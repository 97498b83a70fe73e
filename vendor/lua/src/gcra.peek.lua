-- gcra peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: gcra
--! role: peek
--! keys: key block
--! argv: now periodMs limit burst
--! uses: clock gcra block
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
return tk_unless_blocked(KEYS[2], now, gcra_peek(KEYS[1], now, a))
