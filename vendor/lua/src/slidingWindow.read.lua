-- slidingWindow read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).
--! strategy: slidingWindow
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('HGETALL', KEYS[1])
