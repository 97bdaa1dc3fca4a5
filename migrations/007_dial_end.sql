-- dialgate 007: how and when each call ended, on its dial row. Cooldowns (design §7.6) count from the
-- end of a call with a chosen outcome; after a Redis restart their marks are rebuilt from these rows
-- (§7.13), as the rate-limit records are from `at`.
ALTER TABLE dial_attempts ADD COLUMN outcome text;
-- The caller's clock when the end was settled (epoch ms); null while the call has not ended.
ALTER TABLE dial_attempts ADD COLUMN ended_at bigint;

-- The rebuild reads the ends of the longest cooldown (`ended_at > now − cooldown`).
CREATE INDEX dial_attempts_ended_at ON dial_attempts (ended_at) WHERE ended_at IS NOT NULL;
