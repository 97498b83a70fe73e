-- Concurrency release: gives leaseId's slot back (dropped = 1 signals an overload and contracts an adaptive
-- ceiling). Expired leases are reclaimed first. Reply: {released (1|0), reclaimedIds}; an unknown id is a no-op.
--! strategy: concurrency
--! role: release
--! keys: leases guard
--! argv: now leaseId dropped algorithm minLimit maxLimit initialLimit backoffRatio smoothing tolerance rttWindow
--! uses: clock concurrency
local now = tk_now(ARGV[1])
local id = ARGV[2]
local p = cc_params(ARGV, 4)
local g = cc_load(KEYS[2], p)
local reclaimed = cc_sweep(KEYS[1], g, p, now)
local released = 0
if id ~= '' and redis.call('ZSCORE', KEYS[1], id) then
  cc_drop_lease(KEYS[1], g, p, id, ARGV[3] == '1', now)
  released = 1
end
cc_save(g)
return { released, reclaimed }
