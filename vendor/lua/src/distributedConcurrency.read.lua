-- Fleet concurrency read: the coordinator hash (HGETALL: node id, then its space-separated integers), unchanged.
--! strategy: distributedConcurrency
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('HGETALL', KEYS[1])
