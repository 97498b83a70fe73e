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
