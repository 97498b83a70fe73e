-- quota read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).
--! strategy: quota
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('HMGET', KEYS[1], 's', 'c')
