-- Token budget read: the raw state (window start, tokens spent), unchanged.
--! strategy: tokenBudget
--! role: read
--! keys: key
--! argv: 
--! uses: 
return redis.call('HMGET', KEYS[1], 's', 'c')
