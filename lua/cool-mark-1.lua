--[[
  Cooldown mark: calls to a phone ended with these outcomes at these times (design §7.6). A cooldown
  listing an outcome counts from the latest end with it, so an older end never replaces a newer one:
  a late end signal, or a rebuild from the lead store (design §7.13) that read before a newer end,
  changes nothing. Also the rebuild's restore: one pair per end the dial rows remember.

  KEYS[1]  <prefix>{p:<phoneKey>}:cool  hash: field = outcome, value = latest end of a call so (ms)
  ARGV[1]  keepMs        keep the marks at least this long (the longest cooldown in force)
  ARGV[2…] outcome, at   one pair per end (ms, caller's clock)

  Returns the number of marks written.
]]
--- @include "includes/keep-at-least"

local key = KEYS[1]
local written = 0
for i = 2, #ARGV, 2 do
  local outcome, at = ARGV[i], tonumber(ARGV[i + 1])
  local mark = redis.call('HGET', key, outcome)
  if not mark or at > tonumber(mark) then
    redis.call('HSET', key, outcome, string.format('%.17g', at))
    written = written + 1
  end
end
keepAtLeast(key, tonumber(ARGV[1]) * 2 + DAY_MS)
return written
