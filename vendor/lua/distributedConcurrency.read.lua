-- throttlekit-effect distributedConcurrency.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- Fleet concurrency read: the coordinator hash (HGETALL: node id, then its space-separated integers), unchanged.

return redis.call('HGETALL', KEYS[1])
