-- throttlekit-effect distributedConcurrency.leave: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: nodeId
-- Fleet concurrency leave: removes node `nodeId` from the coordinator hash at once (its share returns to the
-- others on their next heartbeat instead of when its lease lapses). Reply: 1 when it was there, else 0.

return redis.call('HDEL', KEYS[1], ARGV[1])
