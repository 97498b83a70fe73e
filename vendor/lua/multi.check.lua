-- throttlekit-effect multi.check: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: keys...
-- ARGV: now, fence, dims...
-- Multi-dimension check, all or nothing: every dimension (a rate check or a token-budget debit, each on its
-- own key) is decided at one instant on the state as it stands, then either every one is written (all
-- allowed) or none is. Each dimension runs its strategy's own check (the same library part as its
-- single-key script, on the same key and state layout), so a multi-check and single checks share state.
-- ARGV after now and fence: 8 values per dimension, in KEYS order: kind, cost, then the parameters of
-- kind's single-key script in its ARGV order (the rest "0"): gcra periodMs limit burst; tokenBucket
-- capacity refillPerSec; fixedWindow limit windowMs; slidingWindow windowMs limit buckets;
-- slidingWindowLog windowMs limit; quota limit mode periodMs anchor offsetMs weekStartsOn; tokenBudget
-- budget windowMs. Reply: five integers per dimension, in order; {-3, i} when dimension i names no known
-- kind (nothing written). The keys must be distinct (the caller refuses a repeated one). KEYS: the n state
-- keys, then optionally each one's block key in the same order (2n keys): a blocked dimension is denied with
-- the block's end (the others answer their own decision) and nothing is written.

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

-- GCRA. The key is a string: the theoretical arrival time (TAT), written with %.17g.
-- a = { periodMs, limit, burst }; T = periodMs / limit; tau = T * burst; the reported limit is burst.
local GCRA_FORECAST_SIMULATION_LIMIT = 4096

-- The TAT a key holding `stored` (false or nil: no key) stands at `now`: never behind now.
local function gcra_tat_of(stored, now)
  local tat = now
  if stored then tat = tonumber(stored) end
  if tat < now then tat = now end
  return tat
end

local function gcra_tat(key, now)
  return gcra_tat_of(redis.call('GET', key), now)
end

local function gcra_units_left(tat, now, T, tau)
  local remaining = math.floor((tau - (tat - now)) / T)
  if remaining < 0 then remaining = 0 end
  return remaining
end

-- Decides a check of `cost` from the key's TAT: the five integers of the reply, then, when allowed, the
-- new TAT and the write's expiry in ms (both nil when denied). Plain values, no table: many.check decides
-- a hundred keys a run with it.
local function gcra_decide(tat, now, a, cost)
  local T = a.periodMs / a.limit
  local tau = T * a.burst
  local newTat = tat + T * cost
  local allowAt = newTat - tau
  if now < allowAt then
    return 0, a.burst, gcra_units_left(tat, now, T, tau), math.ceil(tat), math.ceil(allowAt - now), nil, nil
  end
  local remaining = math.floor((tau - (newTat - now)) / T)
  if remaining < 0 then remaining = 0 end
  local px = math.ceil(newTat - now)
  if px < 1 then px = 1 end
  return 1, a.burst, remaining, math.ceil(newTat), 0, newTat, px
end

-- Writes the TAT an allowed check reached, expiring when it is back to now (px: a whole number of ms).
-- Both go to Redis as Lua numbers: Redis prints a number argument itself, with up to 17 significant
-- digits (7.0: "%.17g", the bytes tk_fmt writes; 7.2 on: the shortest form that reads back the same
-- double), without the Lua string tk_fmt would build first.
local function gcra_write(key, newTat, px)
  redis.call('SET', key, newTat, 'PX', px)
end

-- Decides a check of `cost`; returns the five-integer reply and, when allowed, the write to apply.
local function gcra_check(key, now, a, cost)
  local allowed, limit, remaining, resetAt, retry, newTat, px = gcra_decide(gcra_tat(key, now), now, a, cost)
  if newTat == nil then return { allowed, limit, remaining, resetAt, retry }, nil end
  return { allowed, limit, remaining, resetAt, retry }, function() gcra_write(key, newTat, px) end
end

-- Peek's remaining for a current TAT: the units left, but at least 1 when a 1-unit check would pass.
local function gcra_peek_units(tat, now, T, tau)
  local remaining = gcra_units_left(tat, now, T, tau)
  if remaining < 1 and not (now < tat + T - tau) then return 1 end
  return remaining
end

-- The decision a 1-unit check would get, consuming nothing; resetAt describes the state as it stands.
local function gcra_peek(key, now, a)
  local T = a.periodMs / a.limit
  local tau = T * a.burst
  local tat = gcra_tat(key, now)
  local newTat = tat + T
  local allowAt = newTat - tau
  local remaining = gcra_peek_units(tat, now, T, tau)
  if now < allowAt then
    return { 0, a.burst, remaining, math.ceil(tat), math.ceil(allowAt - now) }
  end
  return { 1, a.burst, remaining, math.ceil(tat), 0 }
end

-- { spendableNow, nextReplenishAt, fullAt } for units of `cost`: successive checks are simulated one by one
-- (exactly what check would do) up to a bound, beyond which the closed form takes over. Capacity is counted
-- in whole units as peek reports them; "full" is what a fresh key reports.
local function gcra_forecast(key, now, a, cost)
  local T = a.periodMs / a.limit
  local tau = T * a.burst
  local tat0 = gcra_tat(key, now)
  local inc = T * cost
  local spendable = 0
  local tat = tat0
  while spendable < GCRA_FORECAST_SIMULATION_LIMIT do
    local newTat = tat + inc
    if now < newTat - tau then break end
    tat = newTat
    spendable = spendable + 1
  end
  if spendable == GCRA_FORECAST_SIMULATION_LIMIT then
    local closed = math.floor((tau - (tat0 - now)) / inc)
    if closed > spendable then spendable = closed end
  end
  local full = gcra_peek_units(now, now, T, tau)
  local current = gcra_peek_units(tat0, now, T, tau)
  if current >= full then return { spendable, now, now } end
  local units_at = function(t)
    local x = t
    if tat0 > t then x = tat0 end
    return gcra_peek_units(x, t, T, tau)
  end
  local fullAt = tk_first_instant(now, math.ceil(tat0), function(t) return units_at(t) >= full end)
  local nextAt = tk_first_instant(now, fullAt, function(t) return units_at(t) > current end)
  return { spendable, nextAt, fullAt }
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

-- Fixed window, epoch-aligned. The key is a hash: s = window start, c = units counted in it.
-- a = { limit, windowMs }; the reported limit is limit; resetAt is always the end of the current window.

local function fw_count(key, start)
  local fields = redis.call('HMGET', key, 's', 'c')
  if fields[1] and tonumber(fields[1]) == start and fields[2] then return tonumber(fields[2]) end
  return 0
end

local function fw_left(limit, count)
  local remaining = limit - count
  if remaining < 0 then remaining = 0 end
  return remaining
end

local function fw_check(key, now, a, cost)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local resetAt = start + a.windowMs
  local count = fw_count(key, start)
  if count + cost <= a.limit then
    local newCount = count + cost
    local px = math.ceil(resetAt - now)
    if px < 1 then px = 1 end
    local write = function()
      redis.call('HSET', key, 's', tk_fmt(start), 'c', tk_fmt(newCount))
      redis.call('PEXPIRE', key, tk_fmt(px))
    end
    return { 1, a.limit, a.limit - newCount, resetAt, 0 }, write
  end
  return { 0, a.limit, fw_left(a.limit, count), resetAt, math.ceil(resetAt - now) }, nil
end

local function fw_peek(key, now, a)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local resetAt = start + a.windowMs
  local count = fw_count(key, start)
  if count + 1 <= a.limit then return { 1, a.limit, fw_left(a.limit, count), resetAt, 0 } end
  return { 0, a.limit, fw_left(a.limit, count), resetAt, math.ceil(resetAt - now) }
end

local function fw_forecast(key, now, a, cost)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local count = fw_count(key, start)
  local spendable = 0
  if count <= a.limit then spendable = tk_whole_quotient(a.limit - count, cost) end
  if count == 0 then return { spendable, now, now } end
  local resetAt = start + a.windowMs
  return { spendable, resetAt, resetAt }
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

-- Quota (the ThrottleKit core's quota strategy, cadences calendar-month, calendar-week, calendar-day and
-- fixed; a rolling quota runs the slidingWindow scripts): `limit` units per period. The key is a hash laid
-- out as the fixed window's: s = the period start, c = the units counted in it.
-- a = { limit, mode, periodMs, anchor, offsetMs, weekStartsOn }; mode 1 = calendar-month, 2 = calendar-week,
-- 3 = calendar-day, 4 = fixed (every periodMs from anchor). Calendar periods start at local midnight for the
-- fixed UTC offset offsetMs (no DST). The reported limit is limit; resetAt is always the period's end.

local QT_DAY = 86400000

-- The parameters after `limit`, from argv[base] (mode) to argv[base + 4] (weekStartsOn).
local function qt_params(limit, argv, base)
  return {
    limit = limit,
    mode = tonumber(argv[base]),
    periodMs = tonumber(argv[base + 1]),
    anchor = tonumber(argv[base + 2]),
    offsetMs = tonumber(argv[base + 3]),
    weekStartsOn = tonumber(argv[base + 4])
  }
end

-- For day number `day` (days since 1970-01-01, proleptic Gregorian): its day of the month and the length of
-- its month. Years are counted from March 1st (a leap day ends its year) in eras of 400 years.
local function qt_month_of(day)
  local z = day + 719468
  local era = math.floor(z / 146097)
  local e = z - era * 146097
  local y = math.floor((e - math.floor(e / 1460) + math.floor(e / 36524) - math.floor(e / 146096)) / 365)
  local d = e - (365 * y + math.floor(y / 4) - math.floor(y / 100))
  local mi = math.floor((5 * d + 2) / 153)
  local dom = d - math.floor((153 * mi + 2) / 5) + 1
  local month = mi - 9
  if mi < 10 then month = mi + 3 end
  local year = y + era * 400
  if month <= 2 then year = year + 1 end
  if month == 2 then
    if year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then return dom, 29 end
    return dom, 28
  end
  if month == 4 or month == 6 or month == 9 or month == 11 then return dom, 30 end
  return dom, 31
end

-- The period [start, end) holding now.
local function qt_period(now, a)
  if a.mode == 4 then
    local start = a.anchor + math.floor((now - a.anchor) / a.periodMs) * a.periodMs
    return start, start + a.periodMs
  end
  local day = math.floor((now + a.offsetMs) / QT_DAY)
  local first = day
  local following = day + 1
  if a.mode == 2 then
    first = day - ((day + 4) % 7 - a.weekStartsOn) % 7
    following = first + 7
  elseif a.mode ~= 3 then
    local dom, length = qt_month_of(day)
    first = day - (dom - 1)
    following = first + length
  end
  return first * QT_DAY - a.offsetMs, following * QT_DAY - a.offsetMs
end

local function qt_count(key, start)
  local fields = redis.call('HMGET', key, 's', 'c')
  if fields[1] and tonumber(fields[1]) == start and fields[2] then return tonumber(fields[2]) end
  return 0
end

local function qt_left(limit, count)
  local remaining = limit - count
  if remaining < 0 then remaining = 0 end
  return remaining
end

local function qt_check(key, now, a, cost)
  local start, finish = qt_period(now, a)
  local count = qt_count(key, start)
  if count + cost <= a.limit then
    local newCount = count + cost
    local px = math.ceil(finish - now)
    if px < 1 then px = 1 end
    local write = function()
      redis.call('HSET', key, 's', tk_fmt(start), 'c', tk_fmt(newCount))
      redis.call('PEXPIRE', key, tk_fmt(px))
    end
    return { 1, a.limit, a.limit - newCount, finish, 0 }, write
  end
  return { 0, a.limit, qt_left(a.limit, count), finish, math.ceil(finish - now) }, nil
end

local function qt_peek(key, now, a)
  local start, finish = qt_period(now, a)
  local count = qt_count(key, start)
  if count + 1 <= a.limit then return { 1, a.limit, qt_left(a.limit, count), finish, 0 } end
  return { 0, a.limit, qt_left(a.limit, count), finish, math.ceil(finish - now) }
end

local function qt_forecast(key, now, a, cost)
  local start, finish = qt_period(now, a)
  local count = qt_count(key, start)
  local spendable = 0
  if count <= a.limit then spendable = tk_whole_quotient(a.limit - count, cost) end
  if count == 0 then return { spendable, now, now } end
  return { spendable, finish, finish }
end

-- Token budget (the cost axis), epoch-aligned windows. The key is a hash like a fixed window's:
-- s = window start, c = tokens spent in it. A debit is admitted while budget remains before it
-- (spent < budget) and then counts in full, so the crossing debit may overshoot; later debits in the window
-- are refused until its end. a = { budget, windowMs }; the reported limit is budget.

local function tbud_debit(key, now, a, tokens)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local resetAt = start + a.windowMs
  local spent = 0
  local fields = redis.call('HMGET', key, 's', 'c')
  if fields[1] and tonumber(fields[1]) == start and fields[2] then spent = tonumber(fields[2]) end
  if spent < a.budget then
    local newSpent = spent + tokens
    local px = math.ceil(resetAt - now)
    if px < 1 then px = 1 end
    local remaining = a.budget - newSpent
    if remaining < 0 then remaining = 0 end
    local write = function()
      redis.call('HSET', key, 's', tk_fmt(start), 'c', tk_fmt(newSpent))
      redis.call('PEXPIRE', key, tk_fmt(px))
    end
    return { 1, a.budget, remaining, resetAt, 0 }, write
  end
  local remaining = a.budget - spent
  if remaining < 0 then remaining = 0 end
  return { 0, a.budget, remaining, resetAt, math.ceil(resetAt - now) }, nil
end

-- Dimensions (multi.check, many.check): a rate check or a token-budget debit named by its kind, run by its
-- strategy's own library check on its own key, exactly as its single-key script runs it.

-- The parameters of `kind` read from `argv` at `s` onwards, in its single-key script's ARGV order (six
-- slots, the unused ones "0"), or nil when `kind` names no known check.
local function tk_dim_params(kind, argv, s)
  local p1 = tonumber(argv[s])
  local p2 = tonumber(argv[s + 1])
  local p3 = tonumber(argv[s + 2])
  if kind == 'gcra' then return { periodMs = p1, limit = p2, burst = p3 } end
  if kind == 'tokenBucket' then return { capacity = p1, refillPerSec = p2 } end
  if kind == 'fixedWindow' then return { limit = p1, windowMs = p2 } end
  if kind == 'slidingWindow' then return { windowMs = p1, limit = p2, buckets = p3 } end
  if kind == 'slidingWindowLog' then return { windowMs = p1, limit = p2 } end
  if kind == 'quota' then return qt_params(p1, argv, s + 1) end
  if kind == 'tokenBudget' then return { budget = p1, windowMs = p2 } end
  return nil
end

-- Decides `cost` on `key` for `kind` with parameters `a` (from tk_dim_params): the five-integer decision
-- and, when allowed, the write to apply.
local function tk_dim_check(kind, key, now, a, cost)
  if kind == 'gcra' then return gcra_check(key, now, a, cost) end
  if kind == 'tokenBucket' then return tb_check(key, now, a, cost) end
  if kind == 'fixedWindow' then return fw_check(key, now, a, cost) end
  if kind == 'slidingWindow' then return sw_check(key, now, a, cost) end
  if kind == 'slidingWindowLog' then return swl_check(key, now, a, cost) end
  if kind == 'quota' then return qt_check(key, now, a, cost) end
  return tbud_debit(key, now, a, cost)
end

-- The limit `kind` reports in its decisions (a GCRA's burst, a bucket's capacity, a budget, else the limit).
local function tk_dim_limit(kind, a)
  if kind == 'gcra' then return a.burst end
  if kind == 'tokenBucket' then return a.capacity end
  if kind == 'tokenBudget' then return a.budget end
  return a.limit
end

if tk_fenced(ARGV[2]) then return { -2 } end
local now = tk_now(ARGV[1])
local decisions = {}
local writes = {}
local allowed = true
local n = (#ARGV - 2) / 8
local blocks = #KEYS == 2 * n
for i = 1, n do
  local s = 3 + (i - 1) * 8
  local kind = ARGV[s]
  local a = tk_dim_params(kind, ARGV, s + 2)
  if a == nil then return { -3, i } end
  local key = KEYS[i]
  local d, w = tk_dim_check(kind, key, now, a, tonumber(ARGV[s + 1]))
  if blocks then
    local ends = tk_block_end(KEYS[n + i], now)
    if ends then
      d = tk_block_denial(d, ends, now)
      w = nil
    end
  end
  decisions[i] = d
  writes[i] = w
  if not w then allowed = false end
end
if allowed then
  for i = 1, n do writes[i]() end
end
local reply = {}
for i = 1, n do
  local d = decisions[i]
  for j = 1, 5 do reply[#reply + 1] = d[j] end
end
return reply
