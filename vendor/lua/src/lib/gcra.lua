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
