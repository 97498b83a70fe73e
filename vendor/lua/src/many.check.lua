-- Many independent checks of one policy in one run (this package's own: the Redis door's coalesced
-- concurrent checks and its checkMany): each key in KEYS order gets exactly the check its policy's
-- single-key script makes, at one instant, and is written as soon as it is allowed, so a key named twice
-- sees its first check's write. KEYS: the n state keys, then each one's block key in the same order (2n
-- keys): a blocked key is denied with the block's end and nothing is written for it. ARGV after now: the
-- policy's kind and its six parameters (as one dimension of multi.check: the single-key script's
-- parameters in ARGV order, the rest "0"), the fence, then the costs: one per key, or a single one that
-- every key spends. Reply: five integers per key, in order; {-3, 1} when the kind is unknown (nothing
-- written). A GCRA policy reads all its states in the same MGET as the blocks (a key holding another type
-- reads as absent there, where GET would fail the run).
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
local n = math.floor(#KEYS / 2)
local shared = nil
if #ARGV == 10 then shared = tonumber(ARGV[10]) end
local reply = {}
local r = 0
if kind == 'gcra' then
  -- One read for every state and block (the keys share a slot on a cluster, as the batch does). A key
  -- named again reads the TAT its earlier check wrote in this run.
  local stored = redis.call('MGET', unpack(KEYS, 1, 2 * n))
  local written = {}
  for i = 1, n do
    local ends = tk_block_end_of(stored[n + i], now)
    if ends then
      reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5] = 0, a.burst, 0, ends, ends - now
    else
      local key = KEYS[i]
      local state = written[key]
      if state == nil then state = stored[i] end
      local allowed, limit, remaining, resetAt, retry, newTat, px =
        gcra_decide(gcra_tat_of(state, now), now, a, shared or tonumber(ARGV[9 + i]))
      if newTat ~= nil then
        gcra_write(key, newTat, px)
        written[key] = newTat
      end
      reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5] = allowed, limit, remaining, resetAt, retry
    end
    r = r + 5
  end
  return reply
end
-- Every block key in one read.
local blocks = redis.call('MGET', unpack(KEYS, n + 1, 2 * n))
for i = 1, n do
  local d
  local ends = tk_block_end_of(blocks[i], now)
  if ends then
    -- Blocked: denied with the block's end; its state is not even read.
    d = tk_block_denial({ 0, tk_dim_limit(kind, a) }, ends, now)
  else
    local w
    d, w = tk_dim_check(kind, KEYS[i], now, a, shared or tonumber(ARGV[9 + i]))
    if w then w() end
  end
  reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5] = d[1], d[2], d[3], d[4], d[5]
  r = r + 5
end
return reply
