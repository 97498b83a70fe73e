-- slidingWindowLog read: the raw state at the key, unchanged (for peek/forecast outside Redis, and tests).
--! strategy: slidingWindowLog
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
