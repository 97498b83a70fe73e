-- Region fair pool release: the region leaves the window (its weight and grant are removed, so the rest
-- returns to the pool). A window at or past its end is deleted instead. Replies 0.
--! strategy: regionFairPool
--! role: release
--! keys: pool
--! argv: now windowMs region
--! uses: clock
local now = tk_now(ARGV[1])
local windowMs = tonumber(ARGV[2])
local region = ARGV[3]
local start = tonumber(redis.call('HGET', KEYS[1], 'ws'))
if start == nil or now >= start + windowMs then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('HDEL', KEYS[1], 'w:' .. region, 'g:' .. region)
return 0
