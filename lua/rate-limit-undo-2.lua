--[[
  Rate-limit undo: removes exactly one recorded attempt (a dial proved not placed, or an unknown dial
  that expired). Other members of the phone, recorded by other leads, stay.

  The member's name is also kept for a day (a claim token is recorded once, so nothing else uses it):
  a rebuild after a Redis restart (rate-limit-restore-2) reads the lead store a moment before it
  writes, and must not bring back a record undone in between.

  KEYS[1]  <prefix>{p:<phoneKey>}:rl      sorted set: member = claim token, score = record time (ms)
  KEYS[2]  <prefix>{p:<phoneKey>}:undone  set: members undone lately
  ARGV[1]  member              the claim token to remove

  Returns 1 when the member was there, else 0.
]]
--- @include "includes/keep-at-least"

redis.call('SADD', KEYS[2], ARGV[1])
keepAtLeast(KEYS[2], DAY_MS)
return redis.call('ZREM', KEYS[1], ARGV[1])
