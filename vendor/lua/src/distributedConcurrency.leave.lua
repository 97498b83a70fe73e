-- Fleet concurrency leave: removes node `nodeId` from the coordinator hash at once (its share returns to the
-- others on their next heartbeat instead of when its lease lapses). Reply: 1 when it was there, else 0.
--! strategy: distributedConcurrency
--! role: leave
--! keys: key
--! argv: nodeId
--! uses: 
return redis.call('HDEL', KEYS[1], ARGV[1])
