-- Token budget peek: the decision a 1-token debit would get now, remaining = the tokens left; writes nothing.
--! strategy: tokenBudget
--! role: peek
--! keys: key block
--! argv: now budget windowMs
--! uses: clock tokenBudgetRead block
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tk_unless_blocked(KEYS[2], now, tbud_peek(KEYS[1], now, a))
