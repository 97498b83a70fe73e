-- Region fair pool grant (federatedFairEscrow: the cross-region pool of one budget, the ThrottleKit core's
-- Redis region pool wire). The pool is a hash: ws = the window's start, w:<region> = the region's weight
-- (the total weight of its active tenants), g:<region> = what the region was granted in the window (it
-- never shrinks there). A window at or past its end is deleted before anything else. The region's weight
-- is set; a region asking for no more than it holds gets its grant back. Otherwise every other region
-- keeps the larger of its grant and its guarantee floor(weight * limit / total weight), and this one is
-- granted min(wantTotal, max(its grant, limit - what the others keep)), at least 0. Replies the region's
-- grant. Numbers are written as Lua numbers (Redis formats them), as the core writes them, so the hash
-- reads byte for byte as the core's; PEXPIRE is the window's end - now, at least 1.
--! strategy: regionFairPool
--! role: grant
--! keys: pool
--! argv: now windowMs limit region weight wantTotal fence
--! uses: clock
if tk_fenced(ARGV[7]) then return { -2 } end
local now = tk_now(ARGV[1])
local windowMs = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local region = ARGV[4]
local weight = tonumber(ARGV[5])
local wantTotal = tonumber(ARGV[6])

local start = nil
local weights = {}
local grants = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local field, value = flat[i], flat[i + 1]
  local tag = string.sub(field, 1, 2)
  if field == 'ws' then
    start = tonumber(value)
  elseif tag == 'w:' then
    weights[string.sub(field, 3)] = tonumber(value)
  elseif tag == 'g:' then
    grants[string.sub(field, 3)] = tonumber(value)
  end
end

if start == nil or now >= start + windowMs then
  redis.call('DEL', KEYS[1])
  start = math.floor(now / windowMs) * windowMs
  weights = {}
  grants = {}
end

weights[region] = weight
local held = grants[region] or 0
local ttl = start + windowMs - now
if ttl < 1 then ttl = 1 end

local granted = held
if wantTotal > held then
  local total = 0
  for _, w in pairs(weights) do total = total + w end
  local kept = 0
  for other, w in pairs(weights) do
    if other ~= region then
      local floorShare = 0
      if total > 0 then floorShare = math.floor((w * limit) / total) end
      local otherHeld = grants[other] or 0
      if floorShare > otherHeld then kept = kept + floorShare else kept = kept + otherHeld end
    end
  end
  local ceiling = limit - kept
  if held > ceiling then ceiling = held end
  granted = wantTotal
  if ceiling < granted then granted = ceiling end
  if granted < 0 then granted = 0 end
end

redis.call('HSET', KEYS[1], 'ws', start, 'w:' .. region, weight, 'g:' .. region, granted)
redis.call('PEXPIRE', KEYS[1], ttl)
return granted
