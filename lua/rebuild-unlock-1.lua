--[[
  Rebuild unlock: gives up the rebuild lock only if this process still owns it. The lock is taken with
  SET NX PX (one process rebuilds after a Redis restart, design §7.13); when it expired mid-rebuild and
  another process took it, a plain DEL would free that process's lock.

  KEYS[1]  <prefix>{rebuild}:lock  string: owner id
  ARGV[1]  owner id

  Returns 1 when the lock was ours and is gone, else 0.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
