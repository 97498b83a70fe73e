-- throttlekit-effect concurrency.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: leases, guard
-- ARGV: (none)
-- Concurrency read: {held leases with their expiry (ZRANGE WITHSCORES), the guard hash (HGETALL)}, unchanged.

return { redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2]) }
