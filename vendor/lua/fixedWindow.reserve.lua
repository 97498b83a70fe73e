-- throttlekit-effect fixedWindow.reserve: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: now, limit, windowMs, wants, fence
-- fixedWindow reserve (the global-budget coordinator): grants up to `wants` units of the window's budget,
-- a partial grant when fewer are left, and replies {granted, expiresAt, limit}; expiresAt is the window's end.
-- The state is the fixedWindow check's own (s, c), so a reservation and a plain check can share a key.
-- Nothing is written when nothing is granted.

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

if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local a = { limit = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local wants = tonumber(ARGV[4])
local start = math.floor(now / a.windowMs) * a.windowMs
local expiresAt = start + a.windowMs
local granted = fw_left(a.limit, fw_count(KEYS[1], start))
if wants < granted then granted = wants end
if granted > 0 then
  local decision, write = fw_check(KEYS[1], now, a, granted)
  if write then write() else granted = 0 end
end
return { granted, expiresAt, a.limit }
