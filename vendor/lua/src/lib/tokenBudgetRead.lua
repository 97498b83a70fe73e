-- Token budget reads (peek, forecast): the debit's window and state (hash s = window start, c = tokens spent),
-- read only. a = { budget, windowMs }. Kept apart from the debit's part so the debit script's bytes (and SHA)
-- stay as they were.

local function tbud_spent(key, start)
  local fields = redis.call('HMGET', key, 's', 'c')
  if fields[1] and tonumber(fields[1]) == start and fields[2] then return tonumber(fields[2]) end
  return 0
end

-- The decision a 1-token debit would get now, remaining = max(0, budget - spent); nothing is debited.
local function tbud_peek(key, now, a)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local resetAt = start + a.windowMs
  local spent = tbud_spent(key, start)
  local remaining = a.budget - spent
  if remaining < 0 then remaining = 0 end
  if spent < a.budget then return { 1, a.budget, remaining, resetAt, 0 } end
  return { 0, a.budget, remaining, resetAt, math.ceil(resetAt - now) }
end

-- ceil(a / b) for whole a >= 0, b >= 1, corrected where the float quotient rounds across an integer.
local function tbud_ceil_quotient(x, y)
  if x <= 0 then return 0 end
  local q = math.ceil(x / y)
  while q > 1 and (q - 1) * y >= x do q = q - 1 end
  while q * y < x do q = q + 1 end
  return q
end

-- {spendableNow, nextReplenishAt, fullAt} for debits of `tokens`: debit k (from 0) is admitted while
-- spent + k * tokens < budget, so ceil((budget - spent) / tokens) of them; the budget returns whole at the
-- window's end (now when nothing is spent in this window).
local function tbud_forecast(key, now, a, tokens)
  local start = math.floor(now / a.windowMs) * a.windowMs
  local spent = tbud_spent(key, start)
  local spendable = 0
  if spent < a.budget then spendable = tbud_ceil_quotient(a.budget - spent, tokens) end
  if spent == 0 then return { spendable, now, now } end
  local resetAt = start + a.windowMs
  return { spendable, resetAt, resetAt }
end
