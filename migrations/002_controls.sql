-- dialgate 002: operator controls and pre-dial checks (calling windows that move, pause/resume,
-- the host's pre-dial checks). Applied like 001, inside one transaction with search_path set.

-- Why a SCHEDULED lead waits: the reason of the defer that parked it (`window`, `precheck`,
-- `rateLimit`, …). Null for new leads, once claimed, and for retries. A template whose calling window
-- changes wakes its leads parked for `window`, so they meet the new window instead of the old start.
ALTER TABLE leads ADD COLUMN defer_reason text;
-- Pre-dial check defers in a row; back to 0 when the checks let the lead through (its dial row).
ALTER TABLE leads ADD COLUMN precheck_defers integer NOT NULL DEFAULT 0;

-- Waking a template's parked leads.
CREATE INDEX leads_parked ON leads (template_id, defer_reason) WHERE status = 'SCHEDULED';

-- Pauses in force, shared by every process on the schema. `id` is '' for the global pause, else the
-- reseller or template id. Claims skip the leads a pause covers; nothing else changes for them, so
-- they wait without being claimed and re-queued over and over.
CREATE TABLE pauses (
  scope     text NOT NULL CHECK (scope IN ('global', 'reseller', 'template')),
  id        text NOT NULL,
  paused_at bigint NOT NULL,
  PRIMARY KEY (scope, id),
  CHECK ((scope = 'global') = (id = ''))
);

-- A resume makes leads claimable without touching their rows, so the leads triggers of 001 stay quiet:
-- this one wakes idle supervisors on the same channel, in the same commit as the resume.
CREATE FUNCTION notify_dispatch_resumed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM resumed) THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.dialgate_leads', '');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER pauses_deleted AFTER DELETE ON pauses
  REFERENCING OLD TABLE AS resumed
  FOR EACH STATEMENT EXECUTE FUNCTION notify_dispatch_resumed();
