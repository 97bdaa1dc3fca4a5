--[[
  Provider pacing (design §7.19): at most `callsPerSecond` dials of one provider account in any 1000 ms,
  shared by every process on this Redis. A token taken at t counts while now < t + 1000 (half-open,
  as the rate-limit windows). Time is the caller's clock, kept as scores.

  KEYS[1]  <prefix>{c:<account>}:pacing   sorted set: member = dial ref + try, score = taken at (ms)
  ARGV[1]  now              caller's clock (ms)
  ARGV[2]  callsPerSecond
  ARGV[3]  member

  Returns 0 when the token was taken, else the ms until one is free.
]]
--- @include "includes/keep-at-least"

local key = KEYS[1]
local now = tonumber(ARGV[1])
local perSecond = tonumber(ARGV[2])
local member = ARGV[3]
local WINDOW = 1000

redis.call('ZREMRANGEBYSCORE', key, '-inf', now - WINDOW)
local count = redis.call('ZCARD', key)
if count < perSecond then
  redis.call('ZADD', key, now, member)
  keepAtLeast(key, WINDOW + DAY_MS)
  return 0
end
-- The token that frees the next slot: the (count - perSecond + 1)-th oldest.
local freeing = redis.call('ZRANGE', key, count - perSecond, count - perSecond, 'WITHSCORES')
return math.max(1, math.ceil(tonumber(freeing[2]) + WINDOW - now))
