-- Unified rate x concurrency admission with a quota rate axis (calendar and fixed cadences; a rolling quota
-- runs slidingWindow.admit), decided in one atomic step.
-- Concurrency binds first: with no free slot the rate axis is not touched. A rate denial holds nothing.
-- Reply: {allowed, limit, remaining, resetAt, retryAfterMs, bindingAxis, leaseExpiresAt, reclaimedIds}; {-1} when
-- leaseId is already held (nothing written: mint another id).
--! strategy: quota
--! role: admit
--! keys: leases guard key
--! argv: now leaseId ttlMs cost algorithm minLimit maxLimit initialLimit backoffRatio smoothing tolerance rttWindow limit mode periodMs anchor offsetMs weekStartsOn fence
--! uses: clock concurrency quota
if tk_fenced(ARGV[19]) then return { -2 } end
local now = tk_now(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local p = cc_params(ARGV, 5)
local a = qt_params(tonumber(ARGV[13]), ARGV, 14)
local g = cc_load(KEYS[2], p)
local reclaimed = cc_sweep(KEYS[1], g, p, now)
local denied, held, limit = cc_denial(KEYS[1], g, now)
if denied then
  cc_save(g)
  return { denied[1], denied[2], denied[3], denied[4], denied[5], 'concurrency', 0, reclaimed }
end
if redis.call('ZSCORE', KEYS[1], id) then
  cc_save(g)
  return { -1 }
end
local rate, write = qt_check(KEYS[3], now, a, cost)
if not write then
  cc_save(g)
  return { rate[1], rate[2], rate[3], rate[4], rate[5], 'rate', 0, reclaimed }
end
write()
cc_hold(KEYS[1], g, id, now, ttl)
cc_save(g)
local remaining = limit - (held + 1)
if remaining < 0 then remaining = 0 end
if rate[3] < remaining then
  return { 1, rate[2], rate[3], rate[4], 0, '', now + ttl, reclaimed }
end
return { 1, limit, remaining, now, 0, '', now + ttl, reclaimed }
