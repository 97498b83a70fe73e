-- slidingWindow reserve (the global-budget coordinator): grants up to `wants` units of what the sliding
-- estimate leaves, a partial grant when fewer are left, and replies {granted, expiresAt, limit}; expiresAt
-- is the end of the current bucket (tick), later than now. The state is the slidingWindow check's own ring.
-- Nothing is written when nothing is granted.
--! strategy: slidingWindow
--! role: reserve
--! keys: key
--! argv: now windowMs limit wants buckets fence
--! uses: clock slidingWindow
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[5]) }
local wants = tonumber(ARGV[4])
local v = sw_view(sw_ring(KEYS[1]), now, a)
local expiresAt = math.ceil((v.c + 1) * v.w)
if expiresAt <= now then expiresAt = now + 1 end
local granted = sw_peek_units(v, a.limit)
if wants < granted then granted = wants end
if granted > 0 then
  local decision, write = sw_check(KEYS[1], now, a, granted)
  if write then write() else granted = 0 end
end
return { granted, expiresAt, a.limit }
