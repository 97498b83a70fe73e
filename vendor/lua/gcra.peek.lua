-- throttlekit-effect gcra.peek: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, periodMs, limit, burst
-- gcra peek: the decision a 1-unit check would get now, computed atomically; writes nothing.

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
local a = { periodMs = tonumber(ARGV[2]), limit = tonumber(ARGV[3]), burst = tonumber(ARGV[4]) }
return tk_unless_blocked(KEYS[2], now, gcra_peek(KEYS[1], now, a))
