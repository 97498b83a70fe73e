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
