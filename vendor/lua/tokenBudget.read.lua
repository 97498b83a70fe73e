-- throttlekit-effect tokenBudget.read: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: (none)
-- Token budget read: the raw state (window start, tokens spent), unchanged.

return redis.call('HMGET', KEYS[1], 's', 'c')
