-- throttlekit-effect quota.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- quota read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).

return redis.call('HMGET', KEYS[1], 's', 'c')
