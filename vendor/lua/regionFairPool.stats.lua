-- throttlekit-effect regionFairPool.stats: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: pool
-- ARGV: (none)
-- Region fair pool stats: the pool hash as a flat field, value list (ws, w:<region>, g:<region>), unchanged.

return redis.call('HGETALL', KEYS[1])
