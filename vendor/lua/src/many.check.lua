-- Many independent checks of one policy in one run (this package's own: the Redis door's coalesced
-- concurrent checks and its checkMany): each key in KEYS order gets exactly the check its policy's
-- single-key script makes, at one instant, and is written as soon as it is allowed, so a key named twice
-- sees its first check's write. ARGV after now: the policy's kind and its six parameters (as one dimension
-- of multi.check: the single-key script's parameters in ARGV order, the rest "0"), the fence, then one cost
-- per key. KEYS: the n state keys, then optionally each one's block key in the same order (2n keys): a
-- blocked key is denied with the block's end and nothing is written for it. Reply: five integers per key,
-- in order; {-3, 1} when the kind is unknown (nothing written).
--! strategy: many
--! role: check
--! keys: keys...
--! argv: now kind p1 p2 p3 p4 p5 p6 fence costs...
--! uses: clock block gcra tokenBucket fixedWindow slidingWindow slidingWindowLog quota tokenBudget dims
if tk_fenced(ARGV[9]) then return { -2 } end
local now = tk_now(ARGV[1])
local kind = ARGV[2]
local a = tk_dim_params(kind, ARGV, 3)
if a == nil then return { -3, 1 } end
local n = #ARGV - 9
local blocks = #KEYS == 2 * n
-- Every block key in one read (the keys share a slot on a cluster, as the batch does).
local stored = {}
if blocks then stored = redis.call('MGET', unpack(KEYS, n + 1, 2 * n)) end
local reply = {}
for i = 1, n do
  local d
  local ends = tk_block_end_of(stored[i], now)
  if ends then
    -- Blocked: denied with the block's end; its state is not even read.
    d = tk_block_denial({ 0, tk_dim_limit(kind, a) }, ends, now)
  else
    local w
    d, w = tk_dim_check(kind, KEYS[i], now, a, tonumber(ARGV[9 + i]))
    if w then w() end
  end
  for j = 1, 5 do reply[#reply + 1] = d[j] end
end
return reply
