--[[
  Rate-limit restore: puts back a phone's records after Redis forgot them (design §7.13), from the dial
  rows of the lead store: every dial inside the largest window that counts (placed, held unknown, or
  still dialling), scored by its dial time.

  Adds only what is missing (a record still there keeps its own time) and skips members undone since
  the caller read the lead store (rate-limit-undo-2 keeps their names), so running it twice, or on a
  phone Redis did not forget, changes nothing.

  KEYS[1]  <prefix>{p:<phoneKey>}:rl      sorted set: member = claim token, score = record time (ms)
  KEYS[2]  <prefix>{p:<phoneKey>}:undone  set: members undone lately
  ARGV[1]  keepMs              garbage-collection life of KEYS[1] (the largest window, doubled, + a day)
  ARGV[2…] member, at          one pair per dial

  Returns the number of records written.
]]
--- @include "includes/keep-at-least"

local key, undone = KEYS[1], KEYS[2]
local written = 0
for i = 2, #ARGV, 2 do
  local member = ARGV[i]
  if redis.call('SISMEMBER', undone, member) == 0 then
    written = written + redis.call('ZADD', key, 'NX', ARGV[i + 1], member)
  end
end
if written > 0 then
  keepAtLeast(key, tonumber(ARGV[1]))
end
return written
