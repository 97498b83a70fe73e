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
