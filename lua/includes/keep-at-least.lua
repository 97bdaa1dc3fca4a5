-- Garbage collection only. Every decision compares scores with the caller's `now` (a virtual clock in
-- the simulator), so a TTL must never decide anything: it only lets an idle key disappear long after
-- nothing in it can matter. Extends, never shortens, so a caller with short windows cannot cut the
-- life of records another caller still counts.
local DAY_MS = 86400000

local function keepAtLeast(key, ms)
  ms = math.ceil(ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end
