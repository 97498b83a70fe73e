-- Rewards (this package's admin role): giving units back to a key, as `src/engine/reward.ts` computes them
-- on the same state. A state that would read as a fresh key's is deleted; otherwise the key keeps its expiry.

-- A counting hash (s = period start, c = count or tokens spent): the count of the period starting at `start`
-- goes down by `units`; 0 or less deletes the key. Another period's count is already fresh: nothing changes.
local function rw_count_down(key, start, units)
  local fields = redis.call('HMGET', key, 's', 'c')
  if not (fields[1] and tonumber(fields[1]) == start and fields[2]) then return end
  local count = tonumber(fields[2]) - units
  if count <= 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'c', tk_fmt(count))
  end
end
