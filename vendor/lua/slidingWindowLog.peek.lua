-- throttlekit-effect slidingWindowLog.peek: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, windowMs, limit
-- slidingWindowLog peek: the decision a 1-unit check would get now, computed atomically; writes nothing.

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

-- Sliding window log (exact). The key is a sorted set with one member per admitted unit, score = the
-- admission instant, member "<now>-<n>" (n = the live count before it plus its rank, so members stay unique).
-- a = { windowMs, limit }; the reported limit is limit. Entries with score <= now - windowMs have left.

-- Adds `cost` members of score `now` after `count` live ones, in chunks that fit unpack().
local function swl_add(key, now, count, cost)
  local score = tk_fmt(now)
  local i = 1
  while i <= cost do
    local args = {}
    local last = i + 499
    if last > cost then last = cost end
    for n = i, last do
      args[#args + 1] = score
      args[#args + 1] = score .. '-' .. tk_fmt(count + n)
    end
    redis.call('ZADD', key, unpack(args))
    i = last + 1
  end
end

-- The score of the k-th oldest live entry (1-based), without pruning: live entries have score > windowStart.
local function swl_kth(key, windowStart, k)
  local entry = redis.call('ZRANGEBYSCORE', key, '(' .. tk_fmt(windowStart), '+inf', 'WITHSCORES', 'LIMIT', k - 1, 1)
  return tonumber(entry[2])
end

local function swl_left(limit, count)
  local remaining = limit - count
  if remaining < 0 then remaining = 0 end
  return remaining
end

local function swl_retry(key, windowStart, now, a, count, cost)
  if count == 0 then return a.windowMs end
  local k = count + cost - a.limit
  if k < 1 then k = 1 end
  if k > count then k = count end
  local retry = math.ceil(swl_kth(key, windowStart, k) + a.windowMs - now)
  if retry < 1 then retry = 1 end
  return retry
end

local function swl_reset(key, windowStart, now, a, count)
  if count == 0 then return math.ceil(now + a.windowMs) end
  return math.ceil(swl_kth(key, windowStart, 1) + a.windowMs)
end

-- The consuming check prunes departed entries first (as every client of this wire does), then decides.
local function swl_check(key, now, a, cost)
  local windowStart = now - a.windowMs
  redis.call('ZREMRANGEBYSCORE', key, '-inf', tk_fmt(windowStart))
  local count = redis.call('ZCARD', key)
  if count + cost <= a.limit then
    local ttl = math.ceil(a.windowMs)
    if ttl < 1 then ttl = 1 end
    -- The oldest entry once `cost` entries of score `now` are added: `now` bounds it only when something
    -- is added (a cost of 0 adds nothing, so entries stamped after `now` by a clock that stepped back
    -- keep their own score).
    local oldest = now
    if count > 0 then oldest = swl_kth(key, windowStart, 1) end
    if cost > 0 and now < oldest then oldest = now end
    local write = function()
      swl_add(key, now, count, cost)
      redis.call('PEXPIRE', key, tk_fmt(ttl))
    end
    return { 1, a.limit, swl_left(a.limit, count + cost), math.ceil(oldest + a.windowMs), 0 }, write
  end
  return {
    0, a.limit, swl_left(a.limit, count), swl_reset(key, windowStart, now, a, count),
    swl_retry(key, windowStart, now, a, count, cost)
  }, nil
end

local function swl_live_count(key, windowStart)
  return redis.call('ZCOUNT', key, '(' .. tk_fmt(windowStart), '+inf')
end

local function swl_peek(key, now, a)
  local windowStart = now - a.windowMs
  local count = swl_live_count(key, windowStart)
  local resetAt = swl_reset(key, windowStart, now, a, count)
  if count + 1 <= a.limit then return { 1, a.limit, swl_left(a.limit, count), resetAt, 0 } end
  return { 0, a.limit, swl_left(a.limit, count), resetAt, swl_retry(key, windowStart, now, a, count, 1) }
end

local function swl_forecast(key, now, a, cost)
  local windowStart = now - a.windowMs
  local entries = redis.call('ZRANGEBYSCORE', key, '(' .. tk_fmt(windowStart), '+inf', 'WITHSCORES')
  local count = #entries / 2
  local spendable = 0
  if count <= a.limit then spendable = tk_whole_quotient(a.limit - count, cost) end
  if count == 0 then return { spendable, now, now } end
  local current = swl_left(a.limit, count)
  local nextAt = now
  local left = count
  local i = 2
  while i <= #entries do
    -- One run: every entry sharing this score leaves at the same instant.
    local at = tonumber(entries[i])
    while i <= #entries and tonumber(entries[i]) == at do
      left = left - 1
      i = i + 2
    end
    if swl_left(a.limit, left) > current then
      nextAt = math.ceil(at + a.windowMs)
      break
    end
  end
  local fullAt = math.ceil(tonumber(entries[#entries]) + a.windowMs)
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

local now = tk_now(ARGV[1])
local a = { windowMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]) }
return tk_unless_blocked(KEYS[2], now, swl_peek(KEYS[1], now, a))
