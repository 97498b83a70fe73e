-- throttlekit-effect gcra.admit: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: leases, guard, key
-- ARGV: now, leaseId, ttlMs, cost, algorithm, minLimit, maxLimit, initialLimit, backoffRatio, smoothing, tolerance, rttWindow, periodMs, limit, burst, fence
-- Unified rate x concurrency admission with a gcra rate axis, decided in one atomic step.
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

if tk_fenced(ARGV[16]) then return { -2 } end
local now = tk_now(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local p = cc_params(ARGV, 5)
local a = { periodMs = tonumber(ARGV[13]), limit = tonumber(ARGV[14]), burst = tonumber(ARGV[15]) }
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
local rate, write = gcra_check(KEYS[3], now, a, cost)
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
