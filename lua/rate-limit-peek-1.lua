--[[
  Rate-limit peek: how many calls each rule counts for a phone, and whether one more would pass.
  Read-only apart from trimming records no rule can count any more (design §2 step 3: a peek that wrote
  would let deferred and exhausted leads fill their own bucket).

  KEYS[1]  <prefix>{p:<phoneKey>}:rl   sorted set: member = claim token, score = record time (ms)
  ARGV[1]  now                 caller's clock (ms)
  ARGV[2]  keepMs              keep records at least this long (largest window of every rule in force)
  ARGV[3]  marginMs            added to every window (the provider sees a call after its record)
  ARGV[4…] maxCalls, windowMs  one pair per rule

  Returns { allowed (1|0), retryAt (ms, -1 when allowed), count per rule… }
]]
--- @include "includes/rate-limit"

local key = KEYS[1]
local now = tonumber(ARGV[1])
local rules, largest = readRules(4, tonumber(ARGV[2]), tonumber(ARGV[3]))

trim(key, now, largest)
return decide(key, now, rules)
