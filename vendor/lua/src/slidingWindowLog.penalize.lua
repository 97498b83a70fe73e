-- slidingWindowLog penalize (this package's admin role): takes `units` from the key, down to none left at most: a
-- check of the units a 1-unit peek reports left (at most `units`), written as a check writes. Replies
-- with the peek afterwards.
--! strategy: slidingWindowLog
--! role: penalize
--! keys: key block
--! argv: now windowMs limit units fence
--! uses: clock slidingWindowLog block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]) }
local units = tonumber(ARGV[4])
local left = swl_peek(KEYS[1], now, a)[3]
if left > units then left = units end
if left >= 1 then
  local _, write = swl_check(KEYS[1], now, a, left)
  if write then write() end
end
return tk_unless_blocked(KEYS[2], now, swl_peek(KEYS[1], now, a))
