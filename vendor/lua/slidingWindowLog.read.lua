-- throttlekit-effect slidingWindowLog.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- slidingWindowLog read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).

return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
