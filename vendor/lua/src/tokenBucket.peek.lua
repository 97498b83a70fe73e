-- tokenBucket peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: tokenBucket
--! role: peek
--! keys: key block
--! argv: now capacity refillPerSec
--! uses: clock tokenBucket block
local now = tk_now(ARGV[1])
local a = { capacity = tonumber(ARGV[2]), refillPerSec = tonumber(ARGV[3]) }
return tk_unless_blocked(KEYS[2], now, tb_peek(KEYS[1], now, a))
