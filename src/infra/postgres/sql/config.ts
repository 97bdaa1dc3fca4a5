/**
 * Templates and numbers, and whether they may be cached. `s` is the quoted schema; every value is a
 * parameter.
 */
export function configStatements(s: string) {
  return {
    // Whether 004_config_notify.sql was applied: only then may templates and numbers be cached.
    configNotifies: `SELECT to_regprocedure('${s}.notify_config_changed()') IS NOT NULL AS ok`,

    templateById: `SELECT * FROM ${s}.templates WHERE id = $1`,
    // Every part of one statement reads the same snapshot: \`old\` is the rows as they were before it.
    upsertTemplates: `
      WITH input AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text, reseller_id text, number_id text,
          provider text, calling_window jsonb, retry jsonb, rate_limit_rules jsonb, calling_law jsonb)
      ), old AS (
        SELECT t.id, t.calling_window, t.calling_law FROM ${s}.templates t
        WHERE t.id IN (SELECT input.id COLLATE "C" FROM input)
      ), upserted AS (
        INSERT INTO ${s}.templates (id, reseller_id, number_id, provider, calling_window, retry, rate_limit_rules,
          calling_law)
        SELECT * FROM input
        ON CONFLICT (id) DO UPDATE SET
          reseller_id = excluded.reseller_id, number_id = excluded.number_id, provider = excluded.provider,
          calling_window = excluded.calling_window, retry = excluded.retry,
          rate_limit_rules = excluded.rate_limit_rules, calling_law = excluded.calling_law
        RETURNING id, calling_window, calling_law
      )
      -- Regions and presets change a window as much as the window itself does.
      SELECT upserted.id FROM upserted JOIN old ON old.id = upserted.id
      WHERE old.calling_window IS DISTINCT FROM upserted.calling_window
        OR old.calling_law -> 'regions' IS DISTINCT FROM upserted.calling_law -> 'regions'
        OR old.calling_law -> 'presets' IS DISTINCT FROM upserted.calling_law -> 'presets'`,

    numberById: `SELECT * FROM ${s}.numbers WHERE id = $1`,
    poolNumbers: `
      SELECT * FROM ${s}.numbers
      WHERE pool AND status = 'AVAILABLE' AND ($1::text IS NULL OR provider = $1)
      ORDER BY id`,
    upsertNumbers: `
      INSERT INTO ${s}.numbers (id, e164, provider, max_channels, status, pool)
      SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text, e164 text, provider text,
        max_channels integer, status text, pool boolean)
      ON CONFLICT (id) DO UPDATE SET
        e164 = excluded.e164, provider = excluded.provider, max_channels = excluded.max_channels,
        status = excluded.status, pool = excluded.pool`,
  };
}
