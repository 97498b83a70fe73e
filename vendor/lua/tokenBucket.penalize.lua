-- throttlekit-effect tokenBucket.penalize: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, capacity, refillPerSec, units, fence
-- tokenBucket penalize (this package's admin role): takes `units` from the key, down to none left at most: a
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

-- Token bucket. The key is a hash: t = tokens (fractional, %.17g), l = the epoch-ms they were last brought
-- current. a = { capacity, refillPerSec }; r = refillPerSec / 1000 tokens per ms; the reported limit is capacity.

-- The tokens held at `now`: the stored count (capacity when there is none) refilled since l.
local function tb_tokens_at(stored, last, now, capacity, r)
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  local tokens = stored + elapsed * r
  if tokens > capacity then tokens = capacity end
  return tokens
end

local function tb_state(key, now, capacity)
  local fields = redis.call('HMGET', key, 't', 'l')
  local stored = capacity
  local last = now
  if fields[1] then stored = tonumber(fields[1]) end
  if fields[2] then last = tonumber(fields[2]) end
  return stored, last
end

local function tb_whole(tokens)
  local whole = math.floor(tokens)
  if whole < 0 then whole = 0 end
  return whole
end

local function tb_check(key, now, a, cost)
  local capacity = a.capacity
  local r = a.refillPerSec / 1000
  local stored, last = tb_state(key, now, capacity)
  local tokens = tb_tokens_at(stored, last, now, capacity, r)
  if tokens >= cost then
    local newTokens = tokens - cost
    local ttl = math.ceil(capacity / r)
    if ttl < 1 then ttl = 1 end
    local write = function()
      redis.call('HSET', key, 't', tk_fmt(newTokens), 'l', tk_fmt(now))
      redis.call('PEXPIRE', key, tk_fmt(ttl))
    end
    return { 1, capacity, tb_whole(newTokens), now + math.ceil((capacity - newTokens) / r), 0 }, write
  end
  return {
    0, capacity, tb_whole(tokens), now + math.ceil((capacity - tokens) / r), math.ceil((cost - tokens) / r)
  }, nil
end

local function tb_peek(key, now, a)
  local capacity = a.capacity
  local r = a.refillPerSec / 1000
  local stored, last = tb_state(key, now, capacity)
  local tokens = tb_tokens_at(stored, last, now, capacity, r)
  local resetAt = now + math.ceil((capacity - tokens) / r)
  if tokens >= 1 then return { 1, capacity, tb_whole(tokens), resetAt, 0 } end
  return { 0, capacity, tb_whole(tokens), resetAt, math.ceil((1 - tokens) / r) }
end

local function tb_forecast(key, now, a, cost)
  local capacity = a.capacity
  local r = a.refillPerSec / 1000
  local stored, last = tb_state(key, now, capacity)
  local tokens = tb_tokens_at(stored, last, now, capacity, r)
  local spendable = 0
  if tokens >= cost then spendable = math.floor(tokens / cost) end
  while spendable > 0 and spendable * cost > tokens do spendable = spendable - 1 end
  while (spendable + 1) * cost <= tokens do spendable = spendable + 1 end
  if tokens >= capacity then return { spendable, now, now } end
  local tokens_at = function(t) return tb_tokens_at(stored, last, t, capacity, r) end
  local refilledAt = now + math.ceil((capacity - tokens) / r)
  -- Refilling from the stored state can land a rounding error short of capacity: step past it.
  for _ = 1, 4 do
    if tokens_at(refilledAt) < capacity then refilledAt = refilledAt + 1 else break end
  end
  local fullAt = tk_first_instant(now, refilledAt, function(t) return tokens_at(t) >= capacity end)
  local current = tb_whole(tokens)
  local nextAt = tk_first_instant(now, fullAt, function(t) return tb_whole(tokens_at(t)) > current end)
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

if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { capacity = tonumber(ARGV[2]), refillPerSec = tonumber(ARGV[3]) }
local units = tonumber(ARGV[4])
local left = tb_peek(KEYS[1], now, a)[3]
if left > units then left = units end
if left >= 1 then
  local _, write = tb_check(KEYS[1], now, a, left)
  if write then write() end
end
return tk_unless_blocked(KEYS[2], now, tb_peek(KEYS[1], now, a))
