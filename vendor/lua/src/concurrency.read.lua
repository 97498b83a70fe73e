-- Concurrency read: {held leases with their expiry (ZRANGE WITHSCORES), the guard hash (HGETALL)}, unchanged.
--! strategy: concurrency
--! role: read
--! keys: leases guard
--! argv: 
--! uses: 
return { redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2]) }
