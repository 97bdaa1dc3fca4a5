--[[
  Channel restore: puts back the holds of live calls after Redis forgot them, then marks the number
  ready (design §7.13). The caller read the holds from the lead store (dials that are DIALING or
  PROCESSING) after every actor that might hold an unrecorded line had moved on.

  Runs once per loss: when the epoch key already exists the number is in use again, and holds read
  before now could bring back lines released since, so nothing is written. Holders released after the
  read (channel-release-3 noted them) are skipped for the same reason. A lease is never shortened.

  KEYS[1]  <prefix>{n:<numberId>}:holds     sorted set: member = holder (claim token), score = leaseUntil (ms)
  KEYS[2]  <prefix>{n:<numberId>}:epoch     string: set here, to ARGV[2]
  KEYS[3]  <prefix>{n:<numberId>}:released  set: holders released while the epoch key was absent; cleared
  ARGV[1]  now            caller's clock (ms): leases ending at or before it are not restored
  ARGV[2]  epoch          what to store in KEYS[2] (the rebuild's time, for operators)
  ARGV[3…] holder, leaseUntil   one pair per live call on this number

  Returns the number of holds written, or -1 when the number was ready already.
]]
--- @include "includes/keep-at-least"

local holds, epoch, released = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])

if redis.call('EXISTS', epoch) == 1 then
  return -1
end

redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
local written = 0
for i = 3, #ARGV, 2 do
  local holder, leaseUntil = ARGV[i], tonumber(ARGV[i + 1])
  if leaseUntil > now and redis.call('SISMEMBER', released, holder) == 0 then
    local lease = redis.call('ZSCORE', holds, holder)
    if not lease or leaseUntil > tonumber(lease) then
      redis.call('ZADD', holds, leaseUntil, holder)
      keepAtLeast(holds, (leaseUntil - now) * 2 + DAY_MS)
      written = written + 1
    end
  end
end
-- No TTL: the key must outlive any idle spell of the number, or its next acquire would wait for a
-- rebuild that nothing needs.
redis.call('SET', epoch, ARGV[2])
redis.call('DEL', released)
return written
