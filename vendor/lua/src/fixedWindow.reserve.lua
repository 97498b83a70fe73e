-- fixedWindow reserve (the global-budget coordinator): grants up to `wants` units of the window's budget,
-- a partial grant when fewer are left, and replies {granted, expiresAt, limit}; expiresAt is the window's end.
-- The state is the fixedWindow check's own (s, c), so a reservation and a plain check can share a key.
-- Nothing is written when nothing is granted.
--! strategy: fixedWindow
--! role: reserve
--! keys: key
--! argv: now limit windowMs wants fence
--! uses: clock fixedWindow
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { limit = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local wants = tonumber(ARGV[4])
local start = math.floor(now / a.windowMs) * a.windowMs
local expiresAt = start + a.windowMs
local granted = fw_left(a.limit, fw_count(KEYS[1], start))
if wants < granted then granted = wants end
if granted > 0 then
  local decision, write = fw_check(KEYS[1], now, a, granted)
  if write then write() else granted = 0 end
end
return { granted, expiresAt, a.limit }
