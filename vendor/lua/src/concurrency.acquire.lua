-- Concurrency admission: reclaims expired leases, then holds a slot under leaseId when one is free.
-- Reply: {allowed, limit, remaining, resetAt, retryAfterMs, bindingAxis, leaseExpiresAt, reclaimedIds}; {-1} when
-- leaseId is already held (nothing written: mint another id).
--! strategy: concurrency
--! role: acquire
--! keys: leases guard
--! argv: now leaseId ttlMs algorithm minLimit maxLimit initialLimit backoffRatio smoothing tolerance rttWindow fence
--! uses: clock concurrency
if tk_fenced(ARGV[12]) then return { -2 } end
local now = tk_now(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local p = cc_params(ARGV, 4)
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
cc_hold(KEYS[1], g, id, now, ttl)
cc_save(g)
local remaining = limit - (held + 1)
if remaining < 0 then remaining = 0 end
return { 1, limit, remaining, now, 0, '', now + ttl, reclaimed }
