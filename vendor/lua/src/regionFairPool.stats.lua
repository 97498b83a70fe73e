-- Region fair pool stats: the pool hash as a flat field, value list (ws, w:<region>, g:<region>), unchanged.
--! strategy: regionFairPool
--! role: stats
--! keys: pool
--! argv: 
--! uses: 
return redis.call('HGETALL', KEYS[1])
