-- gcra penalize (this package's admin role): takes `units` from the key, down to none left at most: a
-- check of the units a 1-unit peek reports left (at most `units`), written as a check writes. Replies
-- with the peek afterwards.
--! strategy: gcra
--! role: penalize
--! keys: key block
--! argv: now periodMs limit burst units fence
--! uses: clock gcra block
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
local units = tonumber(ARGV[5])
local left = gcra_peek(KEYS[1], now, a)[3]
if left > units then left = units end
if left >= 1 then
  local _, write = gcra_check(KEYS[1], now, a, left)
  if write then write() end
end
return tk_unless_blocked(KEYS[2], now, gcra_peek(KEYS[1], now, a))
