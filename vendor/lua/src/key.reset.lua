-- key reset (this package's admin role): forgets a limiter's or budget's key, whatever its strategy: it
-- reads as a fresh key's. Replies with the number of keys removed (0 or 1).
--! strategy: key
--! role: reset
--! keys: key
--! argv:
--! uses:
return redis.call('DEL', KEYS[1])
