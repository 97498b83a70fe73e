-- throttlekit-effect key.reset: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key, block
-- ARGV: (none)
-- key reset (this package's admin role): forgets a limiter's or budget's key, whatever its strategy, and any
-- block on it: it reads as a fresh key's. Replies with the number of keys removed (0 to 2).

return redis.call('DEL', KEYS[1], KEYS[2])
