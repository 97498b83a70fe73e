-- throttlekit-effect gcra.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- gcra read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).

return redis.call('GET', KEYS[1])
