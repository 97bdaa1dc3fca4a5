--[[
  Channel release: idempotent by holder name, so a duplicate or late end signal can only ever free the
  line it named, never someone else's.

  While the number waits for its rebuild (no epoch key, design §7.13) the release also leaves the holder's
  name behind: the rebuild read the lead store a moment ago and may still list this call as live, and
  channel-restore-3 must not bring back a line that was given back after that read.

  KEYS[1]  <prefix>{n:<numberId>}:holds     sorted set: member = holder (claim token), score = leaseUntil (ms)
  KEYS[2]  <prefix>{n:<numberId>}:epoch     string: present once the holds were rebuilt
  KEYS[3]  <prefix>{n:<numberId>}:released  set: holders released while the epoch key was absent
  ARGV[1]  holder
  ARGV[2]  needEpoch  1 = epoch keys are in use (see channel-acquire-3); 0 = never note names

  Returns 1 only when this call removed the holder, else 0.
]]
--- @include "includes/keep-at-least"

local holds, epoch, released = KEYS[1], KEYS[2], KEYS[3]
local holder = ARGV[1]

if ARGV[2] == '1' and redis.call('EXISTS', epoch) == 0 then
  redis.call('SADD', released, holder)
  keepAtLeast(released, DAY_MS)
end
return redis.call('ZREM', holds, holder)
