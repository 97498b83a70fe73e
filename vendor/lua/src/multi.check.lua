-- Multi-dimension check, all or nothing: every dimension (a rate check or a token-budget debit, each on its
-- own key) is decided at one instant on the state as it stands, then either every one is written (all
-- allowed) or none is. Each dimension runs its strategy's own check (the same library part as its
-- single-key script, on the same key and state layout), so a multi-check and single checks share state.
-- ARGV after now and fence: 8 values per dimension, in KEYS order: kind, cost, then the parameters of
-- kind's single-key script in its ARGV order (the rest "0"): gcra periodMs limit burst; tokenBucket
-- capacity refillPerSec; fixedWindow limit windowMs; slidingWindow windowMs limit buckets;
-- slidingWindowLog windowMs limit; quota limit mode periodMs anchor offsetMs weekStartsOn; tokenBudget
-- budget windowMs. Reply: five integers per dimension, in order; {-3, i} when dimension i names no known
-- kind (nothing written). The keys must be distinct (the caller refuses a repeated one). KEYS: the n state
-- keys, then optionally each one's block key in the same order (2n keys): a blocked dimension is denied with
-- the block's end (the others answer their own decision) and nothing is written.
--! strategy: multi
--! role: check
--! keys: keys...
--! argv: now fence dims...
--! uses: clock block gcra tokenBucket fixedWindow slidingWindow slidingWindowLog quota tokenBudget dims
if tk_fenced(ARGV[2]) then return { -2 } end
local now = tk_now(ARGV[1])
local decisions = {}
local writes = {}
local allowed = true
local n = (#ARGV - 2) / 8
local blocks = #KEYS == 2 * n
for i = 1, n do
  local s = 3 + (i - 1) * 8
  local kind = ARGV[s]
  local a = tk_dim_params(kind, ARGV, s + 2)
  if a == nil then return { -3, i } end
  local key = KEYS[i]
  local d, w = tk_dim_check(kind, key, now, a, tonumber(ARGV[s + 1]))
  if blocks then
    local ends = tk_block_end(KEYS[n + i], now)
    if ends then
      d = tk_block_denial(d, ends, now)
      w = nil
    end
  end
  decisions[i] = d
  writes[i] = w
  if not w then allowed = false end
end
if allowed then
  for i = 1, n do writes[i]() end
end
local reply = {}
for i = 1, n do
  local d = decisions[i]
  for j = 1, 5 do reply[#reply + 1] = d[j] end
end
return reply
