-- throttlekit-effect key.reset: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- key reset (this package's admin role): forgets a limiter's or budget's key, whatever its strategy: it
-- reads as a fresh key's. Replies with the number of keys removed (0 or 1).

return redis.call('DEL', KEYS[1])
