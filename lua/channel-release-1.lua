--[[
  Channel release: idempotent by holder name, so a duplicate or late end signal can only ever free the
  line it named, never someone else's.

  KEYS[1]  <prefix>{n:<numberId>}:holds  sorted set: member = holder (claim token), score = leaseUntil (ms)
  ARGV[1]  holder

  Returns 1 only when this call removed the holder, else 0.
]]
return redis.call('ZREM', KEYS[1], ARGV[1])
