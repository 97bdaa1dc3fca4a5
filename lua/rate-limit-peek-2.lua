--[[
  Rate-limit peek: how many calls each rule counts for a phone, and whether one more would pass.
  Read-only apart from trimming records no rule can count any more (design §2 step 3: a peek that wrote
  would let deferred and exhausted leads fill their own bucket). The lead's cooldowns block too
  (design §7.6); without them KEYS[2] is not read.

  KEYS[1]  <prefix>{p:<phoneKey>}:rl    sorted set: member = claim token, score = record time (ms)
  KEYS[2]  <prefix>{p:<phoneKey>}:cool  hash: field = outcome, value = latest end of a call so (ms)
  ARGV[1]  now                 caller's clock (ms)
  ARGV[2]  keepMs              keep records at least this long (largest window of every rule in force)
  ARGV[3]  marginMs            added to every window (the provider sees a call after its record)
  ARGV[4]  cooldowns           how many (outcome, windowMs) pairs follow: one per outcome of a cooldown
  ARGV[5…] outcome, windowMs   one pair per cooldown outcome, then
           maxCalls, windowMs  one pair per rule

  Returns { allowed (1|0), retryAt (ms, -1 when allowed), count per rule… }
]]
--- @include "includes/rate-limit"

local key, cool = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local cooldowns, first = readCooldowns(4)
local rules, largest = readRules(first, tonumber(ARGV[2]), tonumber(ARGV[3]))

trim(key, now, largest)
return coolDown(decide(key, now, rules), cool, now, cooldowns)
