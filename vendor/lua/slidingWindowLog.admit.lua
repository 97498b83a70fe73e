-- throttlekit-effect slidingWindowLog.admit: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: leases, guard, key
-- ARGV: now, leaseId, ttlMs, cost, algorithm, minLimit, maxLimit, initialLimit, backoffRatio, smoothing, tolerance, rttWindow, windowMs, limit, fence
-- Unified rate x concurrency admission with a slidingWindowLog rate axis, decided in one atomic step.
-- Concurrency binds first: with no free slot the rate axis is not touched. A rate denial holds nothing.
-- Reply: {allowed, limit, remaining, resetAt, retryAfterMs, bindingAxis, leaseExpiresAt, reclaimedIds}; {-1} when
-- leaseId is already held (nothing written: mint another id).

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

-- Concurrency admission: one in-flight ceiling per policy, shared by every process on this Redis.
-- KEYS: leases = a sorted set of held lease ids scored by their expiry (epoch-ms); guard = a hash with the
-- adaptive ceiling's state (e = estimate, n/i/sum/lt/last = RTT statistics, r<k> = the RTT ring, and
-- a:<leaseId> = when each held lease was acquired). Both share a hash tag, so they live in one cluster slot.
-- A lease whose expiry is at or before now is reclaimed (released as dropped) by whichever script runs next.
-- The ceiling is floor(e), moved by releases: fixed (never), aimd (x backoffRatio on a drop, +1 on a healthy
-- release near the limit) or gradient2 (RTT gradient), exactly as the in-process guard does.

local function cc_clamp(value, lo, hi)
  if value < lo then return lo end
  if value > hi then return hi end
  return value
end

-- The eight guard parameters from ARGV[base .. base + 7], normalised like the in-process guard.
local function cc_params(argv, base)
  local p = {
    algorithm = argv[base],
    backoffRatio = tonumber(argv[base + 4]),
    smoothing = tonumber(argv[base + 5]),
    tolerance = tonumber(argv[base + 6])
  }
  p.maxLimit = math.floor(tonumber(argv[base + 2]))
  if p.maxLimit < 1 then p.maxLimit = 1 end
  p.minLimit = cc_clamp(math.floor(tonumber(argv[base + 1])), 1, p.maxLimit)
  p.initial = cc_clamp(math.floor(tonumber(argv[base + 3])), p.minLimit, p.maxLimit)
  p.window = math.floor(tonumber(argv[base + 7]))
  if p.window < 1 then p.window = 1 end
  p.longFactor = p.smoothing / p.window
  return p
end

local function cc_load(guard, p)
  local f = redis.call('HMGET', guard, 'e', 'n', 'i', 'sum', 'lt', 'last')
  return {
    key = guard,
    e = tonumber(f[1]) or p.initial,
    n = tonumber(f[2]) or 0,
    i = tonumber(f[3]) or 0,
    sum = tonumber(f[4]) or 0,
    lt = tonumber(f[5]) or 0,
    last = tonumber(f[6]) or 0,
    dirty = false
  }
end

local function cc_save(g)
  if g.dirty then
    redis.call('HSET', g.key, 'e', tk_fmt(g.e), 'n', tk_fmt(g.n), 'i', tk_fmt(g.i), 'sum', tk_fmt(g.sum),
      'lt', tk_fmt(g.lt), 'last', tk_fmt(g.last))
  end
end

-- Records a healthy release's RTT: the last sample, the slow moving average, the ring and its running sum
-- (re-added exactly once per lap).
local function cc_record(g, p, rtt)
  g.last = rtt
  if g.n == 0 then
    g.lt = rtt
  else
    g.lt = g.lt * (1 - p.longFactor) + rtt * p.longFactor
  end
  local slot = 'r' .. tk_fmt(g.i)
  local evicted = 0
  if g.n == p.window then evicted = tonumber(redis.call('HGET', g.key, slot)) or 0 end
  redis.call('HSET', g.key, slot, tk_fmt(rtt))
  if g.n < p.window then g.n = g.n + 1 end
  g.i = g.i + 1
  if g.i == p.window then
    g.i = 0
    local names = {}
    for k = 0, p.window - 1 do names[#names + 1] = 'r' .. tk_fmt(k) end
    local values = redis.call('HMGET', g.key, unpack(names))
    local sum = 0
    for k = 1, p.window do sum = sum + (tonumber(values[k]) or 0) end
    g.sum = sum
  else
    g.sum = g.sum - evicted + rtt
  end
end

-- Moves the ceiling for one release; inflightBefore counts this lease.
local function cc_release(g, p, dropped, rtt, inflightBefore)
  g.dirty = true
  if rtt < 0 then rtt = 0 end
  if not dropped then cc_record(g, p, rtt) end
  if p.algorithm == 'aimd' then
    if dropped then
      g.e = cc_clamp(math.floor(g.e * p.backoffRatio), p.minLimit, p.maxLimit)
    elseif inflightBefore * 2 >= math.floor(g.e) then
      g.e = cc_clamp(g.e + 1, p.minLimit, p.maxLimit)
    end
  elseif p.algorithm == 'gradient2' then
    if dropped then
      g.e = cc_clamp(g.e * p.backoffRatio, p.minLimit, p.maxLimit)
      return
    end
    local shortRtt = 0
    if g.n > 0 then shortRtt = g.sum / g.n end
    local gradient = 1
    if shortRtt > 0 then gradient = cc_clamp(p.tolerance * g.lt / shortRtt, 0.5, 1) end
    local target = g.e * gradient + math.sqrt(g.e)
    local nextE = cc_clamp(g.e * (1 - p.smoothing) + target * p.smoothing, p.minLimit, p.maxLimit)
    if nextE < g.e or inflightBefore * 2 >= math.floor(g.e) then g.e = nextE end
  end
end

-- Removes one held lease and releases it into the guard.
local function cc_drop_lease(leases, g, p, id, dropped, now)
  local held = redis.call('ZCARD', leases)
  redis.call('ZREM', leases, id)
  local field = 'a:' .. id
  local acquiredAt = tonumber(redis.call('HGET', g.key, field)) or now
  redis.call('HDEL', g.key, field)
  cc_release(g, p, dropped, now - acquiredAt, held)
end

-- Reclaims (as dropped) every lease whose expiry is at or before now; returns their ids.
local function cc_sweep(leases, g, p, now)
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', tk_fmt(now))
  for _, id in ipairs(expired) do cc_drop_lease(leases, g, p, id, true, now) end
  return expired
end

-- The concurrency axis of an admission after the sweep: nil when a slot is free, else the denial.
local function cc_denial(leases, g, now)
  local held = redis.call('ZCARD', leases)
  local limit = math.floor(g.e)
  if held < limit then return nil, held, limit end
  local retry = math.floor(g.last + 0.5)
  if retry < 1 then retry = 1 end
  return { 0, limit, 0, now, retry }, held, limit
end

-- Holds a slot under `id` until now + ttl.
local function cc_hold(leases, g, id, now, ttl)
  redis.call('ZADD', leases, tk_fmt(now + ttl), id)
  redis.call('HSET', g.key, 'a:' .. id, tk_fmt(now))
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

if tk_fenced(ARGV[15]) then return { -2 } end
local now = tk_now(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local p = cc_params(ARGV, 5)
local a = { windowMs = tonumber(ARGV[13]), limit = tonumber(ARGV[14]) }
local g = cc_load(KEYS[2], p)
local reclaimed = cc_sweep(KEYS[1], g, p, now)
local denied, held, limit = cc_denial(KEYS[1], g, now)
if denied then
  cc_save(g)
  return { denied[1], denied[2], denied[3], denied[4], denied[5], 'concurrency', 0, reclaimed }
end
if redis.call('ZSCORE', KEYS[1], id) then
  cc_save(g)
  return { -1 }
end
local rate, write = swl_check(KEYS[3], now, a, cost)
if not write then
  cc_save(g)
  return { rate[1], rate[2], rate[3], rate[4], rate[5], 'rate', 0, reclaimed }
end
write()
cc_hold(KEYS[1], g, id, now, ttl)
cc_save(g)
local remaining = limit - (held + 1)
if remaining < 0 then remaining = 0 end
if rate[3] < remaining then
  return { 1, rate[2], rate[3], rate[4], 0, '', now + ttl, reclaimed }
end
return { 1, limit, remaining, now, 0, '', now + ttl, reclaimed }
