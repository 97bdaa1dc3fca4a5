--[[
  Rate-limit undo: removes exactly one recorded attempt (a dial proved not placed, or an unknown dial
  that expired). Other members of the phone, recorded by other leads, stay.

  KEYS[1]  <prefix>{p:<phoneKey>}:rl   sorted set: member = claim token, score = record time (ms)
  ARGV[1]  member              the claim token to remove

  Returns 1 when the member was there, else 0.
]]
return redis.call('ZREM', KEYS[1], ARGV[1])
