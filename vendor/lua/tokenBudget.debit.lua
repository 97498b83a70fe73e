-- throttlekit-effect tokenBudget.debit: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: now, budget, windowMs, tokens, fence
-- Token budget debit: spends `tokens` of the window's budget; replies {allowed, limit, remaining, resetAt, retryAfterMs}.
-- Nothing is written on a refusal.

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
local a = { budget = tonumber(ARGV[2]), windowMs = tonumber(ARGV[3]) }
local blockEnd = tk_block_end(KEYS[2], now)
if blockEnd then return { 0, a.budget, 0, blockEnd, blockEnd - now } end
local decision, write = tbud_debit(KEYS[1], now, a, tonumber(ARGV[4]))
if write then write() end
return decision
