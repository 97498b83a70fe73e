-- throttlekit-effect slidingWindow.penalize: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, windowMs, limit, buckets, units, fence
-- slidingWindow penalize (this package's admin role): takes `units` from the key, down to none left at most: a
-- check of the units a 1-unit peek reports left (at most `units`), written as a check writes. Replies
-- with the peek afterwards.

-- The Redis server clock in epoch-ms (TIME: seconds * 1000 + floor(microseconds / 1000)), read at most once
-- per run of a script: the fence and "now" share one TIME call (each redis.call costs about as much as a
-- small script's own arithmetic).
local tk_server_ms_read = nil
local function tk_server_ms()
  if tk_server_ms_read == nil then
    local t = redis.call('TIME')
    tk_server_ms_read = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return tk_server_ms_read
end

-- ARGV "now" is epoch-ms; 0 means the Redis server clock, the skew-free choice when many processes share a key.
local function tk_now(arg)
  local now = tonumber(arg)
  if now == 0 then now = tk_server_ms() end
  return now
end

-- Every number written to Redis goes through %.17g: 17 significant digits round-trip a double exactly, and
-- whole numbers print without a fraction or exponent (below 1e17).
local function tk_fmt(x)
  return string.format('%.17g', x)
end

-- The earliest whole-ms instant in (from, to] at which reached(t) holds (reached is monotone), by bisection
-- over the offset from `from`; `to` when it holds nowhere earlier.
local function tk_first_instant(from, to, reached)
  local lo = 0
  local hi = math.ceil(to - from)
  if hi <= 0 then return to end
  while hi - lo > 1 do
    local mid = lo + math.floor((hi - lo) / 2)
    if reached(from + mid) then hi = mid else lo = mid end
  end
  local t = from + hi
  if t < to then return t end
  return to
end

-- floor(a / b) for whole a >= 0, b >= 1, corrected where the float quotient rounds across an integer.
local function tk_whole_quotient(a, b)
  if a <= 0 then return 0 end
  local q = math.floor(a / b)
  while q > 0 and q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

-- ARGV "fence" (the last ARGV of a consuming script; optional): an epoch-ms deadline on the Redis server
-- clock. A script that starts after it applies nothing and replies {-2}: its caller has given up on it (the
-- call timed out or was cancelled), so it must never count later. Absent, empty or 0: no deadline.
local function tk_fenced(arg)
  local fence = tonumber(arg)
  if fence == nil or fence <= 0 then return false end
  return tk_server_ms() > fence
end

-- Sliding window, bucketed estimate. The window is split into S = buckets ticks of width w = windowMs / S;
-- the key is a hash ring of S + 1 slots: field = tick mod (S + 1), value = "tick:count". A slot owned by
-- another tick (an older lap) counts 0. a = { windowMs, limit, buckets }; the reported limit is limit.

-- The ring as { [slot] = { tick, count } }.
local function sw_ring(key)
  local flat = redis.call('HGETALL', key)
  local ring = {}
  for i = 1, #flat, 2 do
    local value = flat[i + 1]
    local sep = string.find(value, ':', 1, true)
    if sep then
      ring[tonumber(flat[i])] = { tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1)) }
    end
  end
  return ring
end

local function sw_count(ring, tick, slots)
  local slot = ring[tick % slots]
  if slot and slot[1] == tick then return slot[2] end
  return 0
end

-- The per-instant quantities: current tick c, the oldest tick's weight, the full ticks' sum, the oldest
-- tick's count, the estimate and resetAt.
local function sw_view(ring, now, a)
  local S = a.buckets
  local slots = S + 1
  local w = a.windowMs / S
  local c = math.floor(now / w)
  local elapsed = now - c * w
  if elapsed < 0 then elapsed = 0 end
  local weight = (w - elapsed) / w
  if weight < 0 then weight = 0 end
  if weight > 1 then weight = 1 end
  local full = 0
  for j = c - S + 1, c do full = full + sw_count(ring, j, slots) end
  local oldest = sw_count(ring, c - S, slots)
  local estimate = full + oldest * weight
  return {
    c = c, w = w, weight = weight, full = full, oldest = oldest, estimate = estimate,
    resetAt = math.ceil((c + 1) * w + a.windowMs)
  }
end

local function sw_left(limit, estimate)
  local remaining = math.floor(limit - estimate)
  if remaining < 0 then remaining = 0 end
  return remaining
end

local function sw_retry(v, now, projected, limit)
  local D = projected - limit
  local retry
  if v.oldest > 0 and D <= v.oldest * v.weight then
    retry = math.ceil(D * v.w / v.oldest)
  else
    retry = math.ceil((v.c + 1) * v.w - now)
  end
  if retry < 1 then retry = 1 end
  return retry
end

local function sw_check(key, now, a, cost)
  local ring = sw_ring(key)
  local v = sw_view(ring, now, a)
  local projected = v.estimate + cost
  if projected <= a.limit then
    local slots = a.buckets + 1
    local count = sw_count(ring, v.c, slots) + cost
    local ttl = math.ceil(a.windowMs + v.w)
    local write = function()
      redis.call('HSET', key, tk_fmt(v.c % slots), tk_fmt(v.c) .. ':' .. tk_fmt(count))
      redis.call('PEXPIRE', key, tk_fmt(ttl))
    end
    return { 1, a.limit, sw_left(a.limit, projected), v.resetAt, 0 }, write
  end
  return { 0, a.limit, sw_left(a.limit, v.estimate), v.resetAt, sw_retry(v, now, projected, a.limit) }, nil
end

-- Peek's remaining: the whole units left, but at least 1 when a 1-unit check would pass.
local function sw_peek_units(v, limit)
  local remaining = sw_left(limit, v.estimate)
  if remaining < 1 and v.estimate + 1 <= limit then return 1 end
  return remaining
end

local function sw_peek(key, now, a)
  local v = sw_view(sw_ring(key), now, a)
  local projected = v.estimate + 1
  if projected <= a.limit then return { 1, a.limit, sw_peek_units(v, a.limit), v.resetAt, 0 } end
  return { 0, a.limit, sw_peek_units(v, a.limit), v.resetAt, sw_retry(v, now, projected, a.limit) }
end

local function sw_forecast(key, now, a, cost)
  local ring = sw_ring(key)
  local v = sw_view(ring, now, a)
  local S = a.buckets
  local slots = S + 1
  local limit = a.limit
  -- Successive checks at `now` add `cost` to tick c, so check k (from 0) is admitted iff
  -- (full + k * cost + weighted) + cost <= limit, which is monotone in k: bisection.
  local weighted = v.oldest * v.weight
  local lo = 0
  local hi = 0
  if v.full < limit then hi = math.floor((limit - v.full) / cost) + 1 end
  while lo < hi do
    local mid = lo + math.floor((hi - lo) / 2)
    if (v.full + mid * cost + weighted) + cost <= limit then lo = mid + 1 else hi = mid end
  end
  local spendable = lo
  -- Capacity in whole units as peek reports them; "full" is a fresh key's limit.
  local current = sw_peek_units(v, limit)
  if current >= limit then return { spendable, now, now } end
  local units_at = function(t) return sw_peek_units(sw_view(ring, t, a), limit) end
  -- The newest tick with a count still in view leaves the window entirely at (tick + S + 1) * w.
  local newest = v.c - S
  for j = v.c, v.c - S + 1, -1 do
    if sw_count(ring, j, slots) > 0 then
      newest = j
      break
    end
  end
  local emptyAt = math.ceil((newest + S + 1) * v.w)
  if emptyAt <= now then emptyAt = now + 1 end
  -- Float rounding can leave a sliver of weight at the boundary: step to the first full instant.
  for _ = 1, 4 do
    if units_at(emptyAt) < limit then emptyAt = emptyAt + 1 else break end
  end
  local fullAt = tk_first_instant(now, emptyAt, function(t) return units_at(t) >= limit end)
  local nextAt = tk_first_instant(now, fullAt, function(t) return units_at(t) > current end)
  return { spendable, nextAt, fullAt }
end

-- Admin blocks (RateLimiterAdmin.block): KEYS "block" beside a state key, in its cluster slot, holds the
-- epoch-ms the block ends (expiring then). A blocked key is denied with resetAt = the block's end and
-- retryAfterMs = the time left, remaining 0, and nothing is written. A caller that passes no block key
-- (the core's clients: one key) reads no block.

-- The end of a block whose key holds `stored` (false or nil: no key) at `now`, or nil when no block runs then.
local function tk_block_end_of(stored, now)
  if not stored then return nil end
  local ends = tonumber(stored)
  if ends == nil or ends <= now then return nil end
  return ends
end

-- The end of the block on `key` at `now`, or nil when `key` is absent or holds no block running at `now`.
local function tk_block_end(key, now)
  if key == nil then return nil end
  return tk_block_end_of(redis.call('GET', key), now)
end

-- The denial of a blocked key: the limit of `d` (the key's own decision), nothing left, retry at `ends`.
local function tk_block_denial(d, ends, now)
  return { 0, d[2], 0, ends, ends - now }
end

-- `d` (a read of the key's state), or the block's denial while `blockKey` holds a block at `now`.
local function tk_unless_blocked(blockKey, now, d)
  local ends = tk_block_end(blockKey, now)
  if ends then return tk_block_denial(d, ends, now) end
  return d
end

-- Forecast `f` ({spendableNow, nextReplenishAt, fullAt}), or, while blocked, nothing spendable until the
-- block's end and full no earlier than it.
local function tk_forecast_unless_blocked(blockKey, now, f)
  local ends = tk_block_end(blockKey, now)
  if not ends then return f end
  local full = f[3]
  if full < ends then full = ends end
  return { 0, ends, full }
end

if tk_fenced(ARGV[6]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), buckets = tonumber(ARGV[4]) }
local units = tonumber(ARGV[5])
local left = sw_peek(KEYS[1], now, a)[3]
if left > units then left = units end
if left >= 1 then
  local _, write = sw_check(KEYS[1], now, a, left)
  if write then write() end
end
return tk_unless_blocked(KEYS[2], now, sw_peek(KEYS[1], now, a))
