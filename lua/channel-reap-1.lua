--[[
  Channel reap: drops the holds whose lease ended, and says whose they were (for the sweep and its
  logs). Read and remove in one step, so a hold reported freed is exactly a hold removed.

  KEYS[1]  <prefix>{n:<numberId>}:holds  sorted set: member = holder (claim token), score = leaseUntil (ms)
  ARGV[1]  now                   caller's clock (ms); a lease ending at or before now is expired

  Returns the expired holders, by lease end.
]]
local holds = KEYS[1]
local now = tonumber(ARGV[1])

local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
end
return expired
