-- Token budget peek: the decision a 1-token debit would get now, remaining = the tokens left; writes nothing.
--! strategy: tokenBudget
--! role: peek
--! keys: key
--! argv: now budget windowMs
--! uses: clock tokenBudgetRead
local now = tk_now(ARGV[1])
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
return tbud_peek(KEYS[1], now, a)
