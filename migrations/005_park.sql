-- dialgate 005: waiting for a line (design §7.11). A lead whose every candidate line was busy is parked
-- on that set of numbers instead of retrying on a timer: it holds nothing and is not claimed until a
-- released line of the set wakes it (a compare-and-set on these columns), or its expiresAt passes.

-- The candidate set (number ids, sorted) the lead waits on; null when it is not waiting for a line.
ALTER TABLE leads ADD COLUMN park_set text[];
-- When the lead first parked in this wait: its place in line, kept while it is woken and parks again;
-- cleared by any other defer and by its dial.
ALTER TABLE leads ADD COLUMN parked_at bigint;

-- Waking the waiters of a number (park_set @> ARRAY[number]).
CREATE INDEX leads_park_set ON leads USING gin (park_set) WHERE status = 'SCHEDULED' AND park_set IS NOT NULL;
-- A phone's leads already served (woken, claimed, dialling, in a call): its turn among the waiters.
CREATE INDEX leads_phone_served ON leads (phone)
  WHERE status IN ('CLAIMED', 'DIALING', 'PROCESSING') OR (status = 'SCHEDULED' AND parked_at IS NOT NULL);
-- The set a template's leads wait on (its latest park), read by the claim for the leads that join it.
CREATE INDEX leads_park_template ON leads (template_id, parked_at DESC)
  WHERE status = 'SCHEDULED' AND park_set IS NOT NULL;
