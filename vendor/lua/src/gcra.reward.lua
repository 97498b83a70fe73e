-- gcra reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: gcra
--! role: reward
--! keys: key block
--! argv: now periodMs limit burst units fence
--! uses: clock gcra block
if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
local units = tonumber(ARGV[5])
-- The TAT moves back by units x T, not before now (a TAT at or before now reads fresh).
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(stored) > now then
  local newTat = tonumber(stored) - (a.periodMs / a.limit) * units
  if newTat <= now then
    redis.call('DEL', KEYS[1])
  else
    local px = math.ceil(newTat - now)
    if px < 1 then px = 1 end
    redis.call('SET', KEYS[1], tk_fmt(newTat), 'PX', tk_fmt(px))
  end
end
return tk_unless_blocked(KEYS[2], now, gcra_peek(KEYS[1], now, a))
