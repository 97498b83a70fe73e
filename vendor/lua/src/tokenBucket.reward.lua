-- tokenBucket reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: tokenBucket
--! role: reward
--! keys: key block
--! argv: now capacity refillPerSec units fence
--! uses: clock tokenBucket block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { capacity = tonumber(ARGV[2]), refillPerSec = tonumber(ARGV[3]) }
local units = tonumber(ARGV[4])
-- The tokens held now (refilled) plus units; a full bucket reads fresh.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = a.refillPerSec / 1000
  local stored, last = tb_state(KEYS[1], now, a.capacity)
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  local tokens = stored + elapsed * r + units
  if tokens >= a.capacity then
    redis.call('DEL', KEYS[1])
  else
    local ttl = math.ceil(a.capacity / r)
    if ttl < 1 then ttl = 1 end
    redis.call('HSET', KEYS[1], 't', tk_fmt(tokens), 'l', tk_fmt(now))
    redis.call('PEXPIRE', KEYS[1], tk_fmt(ttl))
  end
end
return tk_unless_blocked(KEYS[2], now, tb_peek(KEYS[1], now, a))
