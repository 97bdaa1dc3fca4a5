--[[
  Channel acquire: a named hold on one line of a number, with a lease (design §2 step 5, §7.10).
  Strict cap: holds with an unexpired lease never exceed maxChannels. When no line is free the caller is
  counted as a waiter and the count is returned; the dispatcher no longer reads it (a lead that finds
  every line busy parks in the lead store, design §7.11).

  Redis is a cache of what the lead store knows (design §7.13). The number's epoch key says that its holds
  were rebuilt from the lead store (channel-restore-3) since this Redis last started empty. Without it the
  holds of live calls may be missing, so a free line cannot be proven: the acquire refuses and the caller
  fails closed until the rebuild wrote the key. A brand-new number has no key either; its first acquire
  runs the same rebuild, which is how new numbers get theirs (one rule, no global flag: on a cluster one
  node can restart alone, so only a key in the number's own slot can tell what that node forgot).
  With ARGV[7] = 0 (a store that has no lead store to rebuild from) the key is not needed.

  KEYS[1]  <prefix>{n:<numberId>}:holds    sorted set: member = holder (claim token), score = leaseUntil (ms)
  KEYS[2]  <prefix>{n:<numberId>}:waiters  sorted set: member = waiter (lead id), score = counted until (ms)
  KEYS[3]  <prefix>{n:<numberId>}:epoch    string: when the holds were last rebuilt (absent = not ready)
  ARGV[1]  now            caller's clock (ms)
  ARGV[2]  maxChannels
  ARGV[3]  holder
  ARGV[4]  leaseUntil     ms
  ARGV[5]  waiter
  ARGV[6]  waiterTtlMs    how long a waiter stays counted
  ARGV[7]  needEpoch      1 = refuse while KEYS[3] is absent; 0 = Redis is the only truth

  Returns { 1, 0 } when held, { 0, unexpired waiters } when every line is taken, { -1, 0 } when the
  number's holds are not rebuilt yet (nothing was written).
]]
--- @include "includes/keep-at-least"

local holds, waiters, epoch = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local maxChannels = tonumber(ARGV[2])
local holder = ARGV[3]
local leaseUntil = tonumber(ARGV[4])
local waiter = ARGV[5]
local waiterTtl = tonumber(ARGV[6])

if ARGV[7] == '1' and redis.call('EXISTS', epoch) == 0 then
  return { -1, 0 }
end

-- A lease ending at or before now holds nothing: drop it before counting, so a crashed holder's
-- line comes back without anyone releasing it.
redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)

-- Same holder again (a retried command that had already run): success without a second line; the
-- lease may grow but never shrinks.
local lease = redis.call('ZSCORE', holds, holder)
if lease then
  if leaseUntil > tonumber(lease) then
    redis.call('ZADD', holds, leaseUntil, holder)
    keepAtLeast(holds, (leaseUntil - now) * 2 + DAY_MS)
  end
  return { 1, 0 }
end

if redis.call('ZCARD', holds) < maxChannels then
  redis.call('ZADD', holds, leaseUntil, holder)
  keepAtLeast(holds, math.max(0, leaseUntil - now) * 2 + DAY_MS)
  -- It is no longer waiting.
  redis.call('ZREM', waiters, waiter)
  return { 1, 0 }
end

-- Full: count this lead once (re-tries refresh its expiry), drop waiters that gave up, count the rest.
redis.call('ZADD', waiters, now + waiterTtl, waiter)
redis.call('ZREMRANGEBYSCORE', waiters, '-inf', now)
keepAtLeast(waiters, waiterTtl * 2 + DAY_MS)
return { 0, redis.call('ZCARD', waiters) }
