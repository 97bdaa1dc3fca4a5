--[[
  Alert throttle: the first call per key inside a window passes; later ones are dropped until the
  window ends (shared across processes, design §5). The "allowed again at" instant is stored as data and
  compared with the caller's clock: a Redis TTL would follow Redis's clock, not the simulator's.

  KEYS[1]  <prefix>{a:<key>}:throttle  string: allowed again at (ms)
  ARGV[1]  now                 caller's clock (ms)
  ARGV[2]  windowMs

  Returns 1 when this call may alert (and starts a new window), else 0.
]]
--- @include "includes/keep-at-least"

local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])

local allowedAt = redis.call('GET', key)
if allowedAt and now < tonumber(allowedAt) then
  return 0
end
redis.call('SET', key, string.format('%.17g', now + window))
keepAtLeast(key, window * 2 + DAY_MS)
return 1
