--[[
  Rate-limit record: the authoritative, strict cap. Trim, count every rule and add the member only if
  every rule is under its max and no cooldown of the lead blocks the phone (design §7.6), in one atomic
  step, so racing workers on one phone can never record max + 1 (a peek is only advisory). Without
  cooldowns KEYS[2] is not read.

  KEYS[1]  <prefix>{p:<phoneKey>}:rl    sorted set: member = claim token, score = record time (ms)
  KEYS[2]  <prefix>{p:<phoneKey>}:cool  hash: field = outcome, value = latest end of a call so (ms)
  ARGV[1]  now                 caller's clock (ms); becomes the member's score
  ARGV[2]  member              the claim token (leadId:claimSeq)
  ARGV[3]  enforce             1 = add only when allowed; 0 = add regardless (rateLimit.mode alertOnly)
  ARGV[4]  keepMs              keep records at least this long (largest window of every rule in force)
  ARGV[5]  marginMs            added to every window (the provider sees a call after its record)
  ARGV[6]  cooldowns           how many (outcome, windowMs) pairs follow: one per outcome of a cooldown
  ARGV[7…] outcome, windowMs   one pair per cooldown outcome, then
           maxCalls, windowMs  one pair per rule

  Returns { allowed (1|0), retryAt (ms, -1 when allowed), count per rule… } as seen before the add;
  a member already recorded answers allowed.
]]
--- @include "includes/rate-limit"
--- @include "includes/keep-at-least"

local key, cool = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local member = ARGV[2]
local enforce = ARGV[3] == '1'
local cooldowns, first = readCooldowns(6)
local rules, largest = readRules(first, tonumber(ARGV[4]), tonumber(ARGV[5]))

trim(key, now, largest)
local reply = coolDown(decide(key, now, rules), cool, now, cooldowns)

-- A repeated record of the same token (a retried command that had already run) is the same record:
-- it answers allowed, does not count twice and keeps the original record time.
if redis.call('ZSCORE', key, member) then
  reply[1], reply[2] = 1, -1
  return reply
end
if reply[1] == 1 or not enforce then
  redis.call('ZADD', key, now, member)
  keepAtLeast(key, largest * 2 + DAY_MS)
end
return reply
