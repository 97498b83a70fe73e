-- Dimensions (multi.check, many.check): a rate check or a token-budget debit named by its kind, run by its
-- strategy's own library check on its own key, exactly as its single-key script runs it.

-- The parameters of `kind` read from `argv` at `s` onwards, in its single-key script's ARGV order (six
-- slots, the unused ones "0"), or nil when `kind` names no known check.
local function tk_dim_params(kind, argv, s)
  local p1 = tonumber(argv[s])
  local p2 = tonumber(argv[s + 1])
  local p3 = tonumber(argv[s + 2])
  if kind == 'gcra' then return { periodMs = p1, limit = p2, burst = p3 } end
  if kind == 'tokenBucket' then return { capacity = p1, refillPerSec = p2 } end
  if kind == 'fixedWindow' then return { limit = p1, windowMs = p2 } end
  if kind == 'slidingWindow' then return { windowMs = p1, limit = p2, buckets = p3 } end
  if kind == 'slidingWindowLog' then return { windowMs = p1, limit = p2 } end
  if kind == 'quota' then return qt_params(p1, argv, s + 1) end
  if kind == 'tokenBudget' then return { budget = p1, windowMs = p2 } end
  return nil
end

-- Decides `cost` on `key` for `kind` with parameters `a` (from tk_dim_params): the five-integer decision
-- and, when allowed, the write to apply.
local function tk_dim_check(kind, key, now, a, cost)
  if kind == 'gcra' then return gcra_check(key, now, a, cost) end
  if kind == 'tokenBucket' then return tb_check(key, now, a, cost) end
  if kind == 'fixedWindow' then return fw_check(key, now, a, cost) end
  if kind == 'slidingWindow' then return sw_check(key, now, a, cost) end
  if kind == 'slidingWindowLog' then return swl_check(key, now, a, cost) end
  if kind == 'quota' then return qt_check(key, now, a, cost) end
  return tbud_debit(key, now, a, cost)
end

-- The limit `kind` reports in its decisions (a GCRA's burst, a bucket's capacity, a budget, else the limit).
local function tk_dim_limit(kind, a)
  if kind == 'gcra' then return a.burst end
  if kind == 'tokenBucket' then return a.capacity end
  if kind == 'tokenBudget' then return a.budget end
  return a.limit
end
