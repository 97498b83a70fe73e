-- Shaper give-back: a reservation whose call will not go (interrupted while it waited) returns its
-- instants when it is still the key's last one, i.e. the stored departure is exactly its `end` (the same
-- double: compared as numbers, so any exact spelling of it will do). Then the departure goes back to `start` (PX ceil(start - now), or the
-- key is deleted when start is not after now: an empty queue); otherwise nothing changes. Reply 1 | 0.
--! strategy: shaper
--! role: giveBack
--! keys: key
--! argv: now start end
--! uses: clock
local now = tk_now(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]) or 'nan')
if stored == nil or stored ~= tonumber(ARGV[3]) then return 0 end
local start = tonumber(ARGV[2])
if start > now then
  redis.call('SET', KEYS[1], tk_fmt(start), 'PX', math.ceil(start - now))
else
  redis.call('DEL', KEYS[1])
end
return 1
