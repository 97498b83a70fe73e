-- throttlekit-effect slidingWindow.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- slidingWindow read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).

return redis.call('HGETALL', KEYS[1])
