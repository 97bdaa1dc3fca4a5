-- dialgate 003: the Redis rebuild (design §7.13) reads the dials of the largest rate-limit window
-- (`dial_attempts.at > now − window`); without this index that read scans every dial ever made.
CREATE INDEX IF NOT EXISTS dial_attempts_at ON dial_attempts (at);
