-- throttlekit-effect quota.forecast: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, limit, cost, mode, periodMs, anchor, offsetMs, weekStartsOn
-- quota forecast: {spendableNow, nextReplenishAt, fullAt} for units of `cost`, computed atomically; writes nothing.

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
local a = qt_params(tonumber(ARGV[2]), ARGV, 4)
return tk_forecast_unless_blocked(KEYS[2], now, qt_forecast(KEYS[1], now, a, tonumber(ARGV[3])))
