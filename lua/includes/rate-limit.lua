-- Shared by rate-limit-peek-2 and rate-limit-record-2: the sliding windows of one phone (design §7.5, §7.6).
-- The sorted set holds one member per recorded attempt (the claim token), scored by the caller's `now`
-- at record time. Rules arrive as ARGV pairs (maxCalls, windowMs) from ARGV[first] on, after the
-- cooldowns: a count, then that many (outcome, windowMs) pairs.
--
-- `keepMs`: records are kept at least this long whatever the caller's rules (the largest window of
-- every rule in force: other templates count the same phone's records). `marginMs` widens every
-- window, so the cap also holds as the provider sees the calls, a moment after their records.

-- The cooldowns (design §7.6): ARGV[at] pairs follow it. Returns them and where the rules begin.
local function readCooldowns(at)
  local cooldowns, n = {}, tonumber(ARGV[at])
  for i = at + 1, at + 2 * n, 2 do
    cooldowns[#cooldowns + 1] = { outcome = ARGV[i], window = tonumber(ARGV[i + 1]) }
  end
  return cooldowns, at + 1 + 2 * n
end

local function readRules(first, keepMs, marginMs)
  local rules, largest = {}, keepMs
  for i = first, #ARGV, 2 do
    local rule = { max = tonumber(ARGV[i]), window = tonumber(ARGV[i + 1]) + marginMs }
    rules[#rules + 1] = rule
    largest = math.max(largest, rule.window)
  end
  return rules, math.max(largest, keepMs + marginMs)
end

-- Exclusive score bound, printed exactly (Lua's tostring keeps only 14 digits).
local function above(score)
  return '(' .. string.format('%.17g', score)
end

-- Windows are half-open (a record at t counts while now < t + W): a record at or before
-- now - largest counts for no rule. Never trim below the largest window: each rule counts its own,
-- and `largest` includes keepMs, the rules of every other template.
local function trim(key, now, largest)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - largest)
end

-- Returns { allowed (1|0), retryAt (-1 when allowed), count of rule 1, ..., count of rule N }.
-- For each rule at its max, room returns when the (count - max + 1)-th oldest record of its window
-- leaves it; the decision waits for the latest of those over the blocking rules.
local function decide(key, now, rules)
  local retryAt = -1
  local counts = {}
  for i, rule in ipairs(rules) do
    local from = above(now - rule.window)
    local count = redis.call('ZCOUNT', key, from, '+inf')
    counts[i] = count
    if count >= rule.max then
      local freeing = redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES', 'LIMIT', count - rule.max, 1)
      local at = freeing[2] and tonumber(freeing[2]) or now
      retryAt = math.max(retryAt, at + rule.window)
    end
  end
  local reply = { retryAt < 0 and 1 or 0, retryAt }
  for _, count in ipairs(counts) do
    reply[#reply + 1] = count
  end
  return reply
end

-- Folds the cooldowns into a decide() reply: the phone is blocked while a call that ended with one of
-- a cooldown's outcomes (its mark in the hash `cool`) ended less than its window ago, until the latest
-- such instant. The counts stay the rules'. No cooldowns: the hash is not read.
local function coolDown(reply, cool, now, cooldowns)
  for _, cooldown in ipairs(cooldowns) do
    local mark = redis.call('HGET', cool, cooldown.outcome)
    local freeAt = mark and tonumber(mark) + cooldown.window
    if freeAt and now < freeAt then
      reply[1], reply[2] = 0, math.max(reply[2], freeAt)
    end
  end
  return reply
end
