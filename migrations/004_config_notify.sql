-- dialgate 004: templates and numbers notify their changes, so a process may cache them exactly: a
-- cached entry is dropped when a change commits, not after a TTL (PostgresLeadStore's ConfigCache).
-- Applied like 001, inside one transaction with search_path set.
--
-- One channel for every schema of the database, `dialgate_config`, with the schema as the payload:
-- `<schema>.dialgate_config` would pass Postgres' 63-byte channel limit for the longest schema names
-- migrate.ts allows, and one listening connection per pool then serves every schema. A trigger per
-- statement, of any kind (TRUNCATE too), so no write can forget it; Postgres folds the notifications of
-- one transaction into one.
CREATE FUNCTION notify_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('dialgate_config', TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;

CREATE TRIGGER templates_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON templates
  FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();

CREATE TRIGGER numbers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON numbers
  FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
