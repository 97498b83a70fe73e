-- Shaper reserve (this package's leaky-bucket shaper, not the ThrottleKit wire): the key is a string, the
-- departure instant (epoch-ms, fractional) of the key's next call. departure = max(stored or now, now);
-- a call waiting longer than maxQueueMs (departure - now > maxQueueMs) is refused and nothing is written;
-- otherwise end = departure + (1000 / ratePerSec) * cost is stored (%.17g, PX ceil(end - now), at least 1).
-- Reply {accepted (1|0), delayMs, retryAfterMs, start, end, remaining, limit}: start and end as %.17g
-- strings (the exact departures, for shaper.giveBack); remaining the cost-1 calls still accepted now,
-- limit those an empty queue accepts at one instant. The arithmetic is src/engine/shaper.ts's, in order.
--! strategy: shaper
--! role: reserve
--! keys: key
--! argv: now ratePerSec maxQueueMs cost fence
--! uses: clock
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local T = 1000 / tonumber(ARGV[2])
local maxQueueMs = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local limit = math.floor(maxQueueMs / T) + 1
local base = tonumber(redis.call('GET', KEYS[1]) or now)
local departure = base
if departure < now then departure = now end
local delay = departure - now
if delay > maxQueueMs then
  return { 0, 0, math.ceil(delay - maxQueueMs), tk_fmt(departure), tk_fmt(departure), 0, limit }
end
local finish = departure + T * cost
local px = math.ceil(finish - now)
if px < 1 then px = 1 end
redis.call('SET', KEYS[1], tk_fmt(finish), 'PX', px)
local wait = finish - now
local remaining = 0
if wait <= maxQueueMs then remaining = math.floor((maxQueueMs - wait) / T) + 1 end
return { 1, math.ceil(delay), 0, tk_fmt(departure), tk_fmt(finish), remaining, limit }
