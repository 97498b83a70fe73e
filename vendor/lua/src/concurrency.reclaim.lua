-- Concurrency reclaim: releases (as dropped) every lease whose expiry is at or before now; replies with their ids.
--! strategy: concurrency
--! role: reclaim
--! keys: leases guard
--! argv: now algorithm minLimit maxLimit initialLimit backoffRatio smoothing tolerance rttWindow
--! uses: clock concurrency
local now = tk_now(ARGV[1])
local p = cc_params(ARGV, 2)
local g = cc_load(KEYS[2], p)
local reclaimed = cc_sweep(KEYS[1], g, p, now)
cc_save(g)
return reclaimed
