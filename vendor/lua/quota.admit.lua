-- throttlekit-effect quota.admit: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: leases, guard, key
-- ARGV: now, leaseId, ttlMs, cost, algorithm, minLimit, maxLimit, initialLimit, backoffRatio, smoothing, tolerance, rttWindow, limit, mode, periodMs, anchor, offsetMs, weekStartsOn, fence
-- Unified rate x concurrency admission with a quota rate axis (calendar and fixed cadences; a rolling quota
-- runs slidingWindow.admit), decided in one atomic step.
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

if tk_fenced(ARGV[19]) then return { -2 } end
local now = tk_now(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local p = cc_params(ARGV, 5)
local a = qt_params(tonumber(ARGV[13]), ARGV, 14)
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
local rate, write = qt_check(KEYS[3], now, a, cost)
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
