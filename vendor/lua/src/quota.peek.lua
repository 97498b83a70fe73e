-- quota peek: the decision a 1-unit check would get now, computed atomically; writes nothing.
--! strategy: quota
--! role: peek
--! keys: key block
--! argv: now limit mode periodMs anchor offsetMs weekStartsOn
--! uses: clock quota block
local now = tk_now(ARGV[1])
local a = qt_params(tonumber(ARGV[2]), ARGV, 3)
return tk_unless_blocked(KEYS[2], now, qt_peek(KEYS[1], now, a))
