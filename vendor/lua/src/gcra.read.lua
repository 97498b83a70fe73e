-- gcra read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).
--! strategy: gcra
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('GET', KEYS[1])
