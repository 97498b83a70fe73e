-- throttlekit-effect distributedConcurrency.heartbeat: built from vendor/lua/src by `npm run lua:build` (edit the sources, not this file).
-- KEYS: key
-- ARGV: nodeId, lLocal, inflight, expiresAt, now, aggregate, seq, appliedGen, handoff, allocation
-- Fleet concurrency heartbeat (the ThrottleKit core's coordinator wire): one node reports its local ceiling,
-- in-flight count and lease lapse; the script folds the live nodes' ceilings into the global one (lower median
-- or minimum) and answers this node's share of it. `key` is a hash: field = node id, value = the integers
-- "lLocal inflight expiresAt share" (seven, "... committedGen maxSeq unackedHigh", under acknowledged
-- handoff), space-separated. Nodes whose expiresAt is before now are dropped (never the reporting one); the
-- key expires with its longest-lived node. ARGV seq and appliedGen serve acknowledged handoff (-1: absent),
-- handoff is '1' to turn it on, allocation is 'demand-proportional' or anything else for the equal split.
-- Reply: {share, lGlobal, nodes, gen} (gen 0 without handoff). See src/engine/fleetShare.ts, step by step.

-- The Redis server clock in epoch-ms (TIME: seconds * 1000 + floor(microseconds / 1000)), read at most once
-- per run of a script: the fence and "now" share one TIME call (each redis.call costs about as much as a
-- small script's own arithmetic).
local tk_server_ms_read = nil
local function tk_server_ms()
  if tk_server_ms_read == nil then
    local t = redis.call('TIME')
    tk_server_ms_read = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return tk_server_ms_read
end

-- ARGV "now" is epoch-ms; 0 means the Redis server clock, the skew-free choice when many processes share a key.
local function tk_now(arg)
  local now = tonumber(arg)
  if now == 0 then now = tk_server_ms() end
  return now
end

-- Every number written to Redis goes through %.17g: 17 significant digits round-trip a double exactly, and
-- whole numbers print without a fraction or exponent (below 1e17).
local function tk_fmt(x)
  return string.format('%.17g', x)
end

-- The earliest whole-ms instant in (from, to] at which reached(t) holds (reached is monotone), by bisection
-- over the offset from `from`; `to` when it holds nowhere earlier.
local function tk_first_instant(from, to, reached)
  local lo = 0
  local hi = math.ceil(to - from)
  if hi <= 0 then return to end
  while hi - lo > 1 do
    local mid = lo + math.floor((hi - lo) / 2)
    if reached(from + mid) then hi = mid else lo = mid end
  end
  local t = from + hi
  if t < to then return t end
  return to
end

-- floor(a / b) for whole a >= 0, b >= 1, corrected where the float quotient rounds across an integer.
local function tk_whole_quotient(a, b)
  if a <= 0 then return 0 end
  local q = math.floor(a / b)
  while q > 0 and q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

-- ARGV "fence" (the last ARGV of a consuming script; optional): an epoch-ms deadline on the Redis server
-- clock. A script that starts after it applies nothing and replies {-2}: its caller has given up on it (the
-- call timed out or was cancelled), so it must never count later. Absent, empty or 0: no deadline.
local function tk_fenced(arg)
  local fence = tonumber(arg)
  if fence == nil or fence <= 0 then return false end
  return tk_server_ms() > fence
end

local self = ARGV[1]
local lLocal = tonumber(ARGV[2])
local inflight = tonumber(ARGV[3])
local expiresAt = tonumber(ARGV[4])
local now = tk_now(ARGV[5])
local aggregate = ARGV[6]
local seq = tonumber(ARGV[7] or '') or -1
local appliedGen = tonumber(ARGV[8] or '') or -1
local handoff = ARGV[9] == '1'
local demand = ARGV[10] == 'demand-proportional'

local function decode(text)
  local n = {}
  for part in string.gmatch(text, '%S+') do n[#n + 1] = tonumber(part) end
  return { lLocal = n[1], inflight = n[2], expiresAt = n[3], share = n[4],
    gen = n[5] or 0, maxSeq = n[6] or 0, unacked = n[7] or 0 }
end

local function encode(r)
  local text = tk_fmt(r.lLocal) .. ' ' .. tk_fmt(r.inflight) .. ' ' .. tk_fmt(r.expiresAt) .. ' ' .. tk_fmt(r.share)
  if handoff then
    text = text .. ' ' .. tk_fmt(r.gen) .. ' ' .. tk_fmt(r.maxSeq) .. ' ' .. tk_fmt(r.unacked)
  end
  return text
end

-- 1. Upsert this node, keeping its last grant; a stale report (handoff) keeps its stored in-flight count.
local stored = redis.call('HGET', KEYS[1], self)
local prior = nil
if stored then prior = decode(stored) end
local priorShare, priorGen, priorMaxSeq, priorUnacked = 0, 0, 0, 0
if prior then
  priorShare, priorGen, priorMaxSeq, priorUnacked = prior.share, prior.gen, prior.maxSeq, prior.unacked
end
local fresh = (not handoff) or seq < 0 or seq > priorMaxSeq
local me = { lLocal = lLocal, inflight = inflight, expiresAt = expiresAt, share = priorShare,
  gen = priorGen, maxSeq = 0, unacked = priorUnacked }
if not fresh and prior then me.inflight = prior.inflight end
if handoff then me.maxSeq = math.max(priorMaxSeq, seq) end
redis.call('HSET', KEYS[1], self, encode(me))

-- 2. The live nodes; the others' expired fields are deleted.
local nodes = {}
local ids = {}
local latest = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local id = all[i]
  local node = me
  if id ~= self then node = decode(all[i + 1]) end
  if id ~= self and node.expiresAt < now then
    redis.call('HDEL', KEYS[1], id)
  else
    nodes[id] = node
    ids[#ids + 1] = id
    if node.expiresAt > latest then latest = node.expiresAt end
  end
end
table.sort(ids)
local n = #ids

-- 3. The global ceiling.
local limits = {}
for i = 1, n do limits[i] = nodes[ids[i]].lLocal end
table.sort(limits)
local lGlobal = limits[1]
if aggregate ~= 'min' then lGlobal = limits[math.floor((n - 1) / 2) + 1] end

-- 4. This node's target.
local target
if not demand then
  local base = math.floor(lGlobal / n)
  local rank = 0
  for i = 1, n do if ids[i] == self then rank = i - 1 end end
  target = base
  if rank < lGlobal - base * n then target = base + 1 end
elseif me.inflight < me.share then
  target = me.inflight + 1
else
  local hungry = 0
  local rank = 0
  local reserved = 0
  for i = 1, n do
    local node = nodes[ids[i]]
    if node.inflight >= node.share then
      if ids[i] == self then rank = hungry end
      hungry = hungry + 1
    else
      reserved = reserved + node.inflight + 1
    end
  end
  local spare = math.max(0, lGlobal - reserved)
  local base = math.floor(spare / hungry)
  target = base
  if rank < spare - base * hungry then target = base + 1 end
  target = math.max(1, target)
end

-- 5. Capped by what the other live nodes hold.
local held = 0
for i = 1, n do
  if ids[i] ~= self then
    local node = nodes[ids[i]]
    local holds = node.share
    if handoff then holds = node.unacked end
    held = held + math.max(holds, node.inflight)
  end
end
local share = math.max(0, math.min(target, lGlobal - held))

-- 6. Record the grant.
if not handoff then
  me.share = share
  redis.call('HSET', KEYS[1], self, encode(me))
elseif fresh then
  me.share = share
  if share ~= priorShare then me.gen = priorGen + 1 end
  if appliedGen >= me.gen then me.unacked = share else me.unacked = math.max(priorUnacked, share) end
  redis.call('HSET', KEYS[1], self, encode(me))
end

local ttl = latest - now
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return { me.share, lGlobal, n, me.gen }
