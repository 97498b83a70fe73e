-- slidingWindow reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: slidingWindow
--! role: reward
--! keys: key block
--! argv: now windowMs limit buckets units fence
--! uses: clock slidingWindow block
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
local units = tonumber(ARGV[5])
-- Units come off the window's ticks, newest first; a window counting nothing reads fresh.
local ring = sw_ring(KEYS[1])
local slots = a.buckets + 1
local c = math.floor(now / (a.windowMs / a.buckets))
local left = units
local counted = 0
for tick = c, c - a.buckets, -1 do
  local slot = ring[tick % slots]
  if slot and slot[1] == tick then
    local taken = slot[2]
    if taken > left then taken = left end
    left = left - taken
    local count = slot[2] - taken
    if count > 0 then
      redis.call('HSET', KEYS[1], tk_fmt(tick % slots), tk_fmt(tick) .. ':' .. tk_fmt(count))
    else
      redis.call('HDEL', KEYS[1], tk_fmt(tick % slots))
    end
    counted = counted + count
  end
end
if counted == 0 then redis.call('DEL', KEYS[1]) end
return tk_unless_blocked(KEYS[2], now, sw_peek(KEYS[1], now, a))
