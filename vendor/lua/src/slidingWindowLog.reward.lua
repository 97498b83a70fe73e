-- slidingWindowLog reward (this package's admin role): gives `units` back to the key, up to a fresh key's capacity
-- (src/engine/reward.ts). Replies with the peek afterwards.
--! strategy: slidingWindowLog
--! role: reward
--! keys: key block
--! argv: now windowMs limit units fence
--! uses: clock slidingWindowLog block
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]) }
local units = tonumber(ARGV[4])
-- Departed entries are pruned (as a check prunes), then the units newest entries go.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tk_fmt(now - a.windowMs))
local held = redis.call('ZCARD', KEYS[1])
if held > 0 then
  local k = units
  if k > held then k = held end
  redis.call('ZREMRANGEBYRANK', KEYS[1], tk_fmt(-k), -1)
end
return tk_unless_blocked(KEYS[2], now, swl_peek(KEYS[1], now, a))
