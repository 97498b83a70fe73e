-- fixedWindow peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: fixedWindow
--! role: peek
--! keys: key block
--! argv: now limit windowMs
--! uses: clock fixedWindow block
local now = tk_now(ARGV[1])
local a = { limit = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tk_unless_blocked(KEYS[2], now, fw_peek(KEYS[1], now, a))
