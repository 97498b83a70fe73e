-- throttlekit-effect federated.lease: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: now, tokens, windowMs, budget, fence
-- Federated lease (the global budget of a federated: policy, the ThrottleKit core's Redis coordinator wire):
-- the key is a hash, budget = what is left of the window's budget, expiresAt = the window's end (epoch-ms).
-- The window is floor(now / windowMs) * windowMs; a hash of another window (or none) is deleted and the
-- budget starts at ARGV budget. Grants min(tokens, budget), stores what is left and the window's end, sets
-- PEXPIRE to the window's end - now (at least 1), and replies {granted, expiresAt}. Numbers are written as
-- Lua numbers (Redis formats them), as the core writes them, so the hash reads as the core's.

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

if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local tokens = tonumber(ARGV[2])
local windowMs = tonumber(ARGV[3])
local expiresAt = math.floor(now / windowMs) * windowMs + windowMs
local stored = redis.call('HMGET', KEYS[1], 'budget', 'expiresAt')
local budget = tonumber(stored[1])
if budget == nil or tonumber(stored[2]) ~= expiresAt then
  redis.call('DEL', KEYS[1])
  budget = tonumber(ARGV[4])
end
local granted = tokens
if granted > budget then granted = budget end
redis.call('HSET', KEYS[1], 'budget', budget - granted, 'expiresAt', expiresAt)
local ttl = expiresAt - now
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return { granted, expiresAt }
