-- key unblock (this package's admin role): lifts a block on a key (none: nothing changes); the key's state
-- is not touched. Replies with the number of blocks lifted (0 or 1).
--! strategy: key
--! role: unblock
--! keys: block
--! argv: fence
--! uses: clock
if tk_fenced(ARGV[1]) then return { -2 } end
return redis.call('DEL', KEYS[1])
