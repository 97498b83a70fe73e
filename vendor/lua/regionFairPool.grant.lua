-- throttlekit-effect regionFairPool.grant: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: pool
-- ARGV: now, windowMs, limit, region, weight, wantTotal, fence
-- Region fair pool grant (federatedFairEscrow: the cross-region pool of one budget, the ThrottleKit core's
-- Redis region pool wire). The pool is a hash: ws = the window's start, w:<region> = the region's weight
-- (the total weight of its active tenants), g:<region> = what the region was granted in the window (it
-- never shrinks there). A window at or past its end is deleted before anything else. The region's weight
-- is set; a region asking for no more than it holds gets its grant back. Otherwise every other region
-- keeps the larger of its grant and its guarantee floor(weight * limit / total weight), and this one is
-- granted min(wantTotal, max(its grant, limit - what the others keep)), at least 0. Replies the region's
-- grant. Numbers are written as Lua numbers (Redis formats them), as the core writes them, so the hash
-- reads byte for byte as the core's; PEXPIRE is the window's end - now, at least 1.

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

if tk_fenced(ARGV[7]) then return { -2 } end
local now = tk_now(ARGV[1])
local windowMs = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local region = ARGV[4]
local weight = tonumber(ARGV[5])
local wantTotal = tonumber(ARGV[6])

local start = nil
local weights = {}
local grants = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local field, value = flat[i], flat[i + 1]
  local tag = string.sub(field, 1, 2)
  if field == 'ws' then
    start = tonumber(value)
  elseif tag == 'w:' then
    weights[string.sub(field, 3)] = tonumber(value)
  elseif tag == 'g:' then
    grants[string.sub(field, 3)] = tonumber(value)
  end
end

if start == nil or now >= start + windowMs then
  redis.call('DEL', KEYS[1])
  start = math.floor(now / windowMs) * windowMs
  weights = {}
  grants = {}
end

weights[region] = weight
local held = grants[region] or 0
local ttl = start + windowMs - now
if ttl < 1 then ttl = 1 end

local granted = held
if wantTotal > held then
  local total = 0
  for _, w in pairs(weights) do total = total + w end
  local kept = 0
  for other, w in pairs(weights) do
    if other ~= region then
      local floorShare = 0
      if total > 0 then floorShare = math.floor((w * limit) / total) end
      local otherHeld = grants[other] or 0
      if floorShare > otherHeld then kept = kept + floorShare else kept = kept + otherHeld end
    end
  end
  local ceiling = limit - kept
  if held > ceiling then ceiling = held end
  granted = wantTotal
  if ceiling < granted then granted = ceiling end
  if granted < 0 then granted = 0 end
end

redis.call('HSET', KEYS[1], 'ws', start, 'w:' .. region, weight, 'g:' .. region, granted)
redis.call('PEXPIRE', KEYS[1], ttl)
return granted
