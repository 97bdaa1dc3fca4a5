-- dialgate 001: the durable lead store (design §4, §7.1–7.4).
-- Applied by src/infra/postgres/migrate.ts inside one transaction with search_path set to the target
-- schema, so names here are unqualified. migrate.ts creates schema_migrations itself (it must exist
-- before it can tell which files were applied).
--
-- Every time is epoch ms (bigint) taken from the caller's clock: NOW() is never used for due times,
-- leases or dial times, so that the simulator's virtual clock drives the same SQL (design §7.7).
-- Ids are COLLATE "C" so ORDER BY id is the byte order the in-memory store sorts by.

CREATE TABLE leads (
  -- Submission order, for list() and reports.
  seq               bigint GENERATED ALWAYS AS IDENTITY,
  id                text COLLATE "C" PRIMARY KEY,
  phone             text NOT NULL,
  template_id       text NOT NULL,
  status            text NOT NULL
                    CHECK (status IN ('SCHEDULED', 'CLAIMED', 'DIALING', 'PROCESSING', 'FINISHED')),
  outcome           text,
  attempt           integer NOT NULL DEFAULT 0,
  not_placed_streak integer NOT NULL DEFAULT 0,
  claim_seq         integer NOT NULL DEFAULT 0,
  -- `id:claim_seq` of the current (or last) claim; every compare-and-set includes it (§7.1).
  token             text,
  owner             text,
  lease_until       bigint,
  -- When the lead may be claimed again (a defer moves it).
  next_attempt_at   bigint NOT NULL,
  -- When the current attempt became due (submit or retry): claims take the oldest first, so a deferred
  -- lead keeps its place in line.
  due_at            bigint NOT NULL,
  expires_at        bigint,
  time_zone         text,
  cancel_requested  boolean NOT NULL DEFAULT false,
  -- The lead's last dial (a row of dial_attempts); null until its first dial.
  dial_ref          text,
  payload           jsonb NOT NULL DEFAULT '{}'
);

-- Claim path when few leads are due, nextDueAt, and the status scans (DIALING, PROCESSING).
CREATE INDEX leads_status_next ON leads (status, next_attempt_at);
-- Claim path under a backlog: read in claim order and stop after LIMIT rows, instead of sorting every
-- due lead on each claim (measured: 50 ms → 0.1 ms per claim with 150k leads due).
CREATE INDEX leads_claim_order ON leads (due_at, id) WHERE status IN ('SCHEDULED', 'CLAIMED');
-- Lease takeover: CLAIMED/DIALING leads whose owner stopped renewing.
CREATE INDEX leads_lease ON leads (lease_until) WHERE status IN ('CLAIMED', 'DIALING');

-- One row per makeCall, written before the call (the unknown-dial rule and the Redis rebuild of §7.13
-- read these rows).
CREATE TABLE dial_attempts (
  dial_ref   text PRIMARY KEY,
  lead_id    text COLLATE "C" NOT NULL REFERENCES leads (id),
  -- The claim that dialled: a settlement of a newer claim never touches this row.
  token      text NOT NULL,
  number_id  text NOT NULL,
  at         bigint NOT NULL,
  call_id    text,
  -- What the dispatcher learnt of the dial: placed, unknown, or the dialResult of a defer/finish.
  result     text,
  -- Sent without a usable reply (or its owner vanished mid-dial): held until reconciled (§7.16).
  unknown    boolean NOT NULL DEFAULT false,
  -- Whether the claim token was recorded as a rate-limit member.
  recorded   boolean NOT NULL,
  result_at  bigint
);

CREATE INDEX dial_attempts_call_id ON dial_attempts (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX dial_attempts_lead ON dial_attempts (lead_id);

CREATE TABLE numbers (
  id           text COLLATE "C" PRIMARY KEY,
  e164         text NOT NULL,
  provider     text NOT NULL,
  max_channels integer NOT NULL CHECK (max_channels >= 0),
  status       text NOT NULL CHECK (status IN ('AVAILABLE', 'DISABLED')),
  pool         boolean NOT NULL
);

CREATE TABLE templates (
  id               text COLLATE "C" PRIMARY KEY,
  reseller_id      text NOT NULL,
  number_id        text,
  provider         text,
  -- "window" is a reserved word in SQL.
  calling_window   jsonb,
  retry            jsonb,
  rate_limit_rules jsonb
);

CREATE TABLE blocked_phones (
  phone text PRIMARY KEY
);

-- Wakes idle supervisors (design §3: no polling delay between a lead becoming due and its dispatch).
-- One notification per statement that leaves any lead SCHEDULED: a submit, a defer, a retry, an
-- expired unknown dial re-queued. A trigger rather than a NOTIFY from the client, so the notification
-- is part of the same commit as the change and no code path can forget it. The payload is empty so
-- Postgres folds the notifications of one transaction into one.
CREATE FUNCTION notify_leads_scheduled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM changed_leads WHERE status = 'SCHEDULED') THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.dialgate_leads', '');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER leads_inserted AFTER INSERT ON leads
  REFERENCING NEW TABLE AS changed_leads
  FOR EACH STATEMENT EXECUTE FUNCTION notify_leads_scheduled();

CREATE TRIGGER leads_updated AFTER UPDATE ON leads
  REFERENCING NEW TABLE AS changed_leads
  FOR EACH STATEMENT EXECUTE FUNCTION notify_leads_scheduled();
