-- quota penalize (this package's admin role): takes `units` from the key, down to none left at most: a
-- check of the units a 1-unit peek reports left (at most `units`), written as a check writes. Replies
-- with the peek afterwards.
--! strategy: quota
--! role: penalize
--! keys: key block
--! argv: now limit mode periodMs anchor offsetMs weekStartsOn units fence
--! uses: clock quota block
if tk_fenced(ARGV[9]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = qt_params(tonumber(ARGV[2]), ARGV, 3)
local units = tonumber(ARGV[8])
local left = qt_peek(KEYS[1], now, a)[3]
if left > units then left = units end
if left >= 1 then
  local _, write = qt_check(KEYS[1], now, a, left)
  if write then write() end
end
return tk_unless_blocked(KEYS[2], now, qt_peek(KEYS[1], now, a))
