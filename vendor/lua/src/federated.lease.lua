-- Federated lease (the global budget of a federated: policy, the ThrottleKit core's Redis coordinator wire):
-- the key is a hash, budget = what is left of the window's budget, expiresAt = the window's end (epoch-ms).
-- The window is floor(now / windowMs) * windowMs; a hash of another window (or none) is deleted and the
-- budget starts at ARGV budget. Grants min(tokens, budget), stores what is left and the window's end, sets
-- PEXPIRE to the window's end - now (at least 1), and replies {granted, expiresAt}. Numbers are written as
-- Lua numbers (Redis formats them), as the core writes them, so the hash reads as the core's.
--! strategy: federated
--! role: lease
--! keys: key
--! argv: now tokens windowMs budget fence
--! uses: clock
if tk_fenced(ARGV[5]) then return { -2 } end
local now = tk_now(ARGV[1])
local tokens = tonumber(ARGV[2])
local windowMs = tonumber(ARGV[3])
local expiresAt = math.floor(now / windowMs) * windowMs + windowMs
local stored = redis.call('HMGET', KEYS[1], 'budget', 'expiresAt')
local budget = tonumber(stored[1])
if budget == nil or tonumber(stored[2]) ~= expiresAt then
  redis.call('DEL', KEYS[1])
  budget = tonumber(ARGV[4])
end
local granted = tokens
if granted > budget then granted = budget end
redis.call('HSET', KEYS[1], 'budget', budget - granted, 'expiresAt', expiresAt)
local ttl = expiresAt - now
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return { granted, expiresAt }
