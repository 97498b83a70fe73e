-- Concurrency heartbeat: reclaims expired leases, then extends every listed lease still held to now + ttlMs.
-- ARGV from position 11 on are lease ids. Reply: {liveIds, reclaimedIds (listed but not held), nextDeadline}.
--! strategy: concurrency
--! role: renew
--! keys: leases guard
--! argv: now ttlMs algorithm minLimit maxLimit initialLimit backoffRatio smoothing tolerance rttWindow leaseIds...
--! uses: clock concurrency
local now = tk_now(ARGV[1])
local ttl = tonumber(ARGV[2])
local p = cc_params(ARGV, 3)
local g = cc_load(KEYS[2], p)
cc_sweep(KEYS[1], g, p, now)
cc_save(g)
local live = {}
local gone = {}
local expiry = tk_fmt(now + ttl)
for k = 11, #ARGV do
  local id = ARGV[k]
  if id ~= '' and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, id)
    live[#live + 1] = id
  else
    gone[#gone + 1] = id
  end
end
return { live, gone, now + ttl }
