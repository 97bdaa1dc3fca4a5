import type {
  DeferReason,
  LeadInput,
  LeadRecord,
  LeadStatus,
  OutboundNumber,
  PauseScope,
  Template,
} from "../../machines/ports.js";

/**
 * Rows ⇄ records. bigint columns arrive as strings (pg does not guess at precision); times fit a
 * double.
 */

export interface LeadRow {
  /** Only in claims. */
  blocked?: boolean;
  id: string;
  phone: string;
  template_id: string;
  status: LeadStatus;
  outcome: string | null;
  attempt: number;
  not_placed_streak: number;
  claim_seq: number;
  token: string | null;
  owner: string | null;
  lease_until: string | null;
  next_attempt_at: string;
  due_at: string;
  expires_at: string | null;
  time_zone: string | null;
  cancel_requested: boolean;
  dial_ref: string | null;
  payload: Record<string, unknown>;
  defer_reason: DeferReason | null;
  precheck_defers: number;
  park_set: string[] | null;
  parked_at: string | null;
  dial_number_id: string;
  dial_at: string;
  dial_call_id: string | null;
  dial_unknown: boolean;
  dial_recorded: boolean;
}

export interface TemplateRow {
  id: string;
  reseller_id: string;
  number_id: string | null;
  provider: string | null;
  calling_window: Template["window"] | null;
  retry: Template["retry"] | null;
  rate_limit_rules: Template["rateLimitRules"] | null;
  calling_law: CallingLaw | null;
}

/** The calling-law fields of a template, stored as one jsonb (migration 006). */
type CallingLaw = Pick<Template, "cooldowns" | "regions" | "presets" | "callerId">;
const LAW_FIELDS = ["cooldowns", "regions", "presets", "callerId"] as const;

export type NumberRow = Omit<OutboundNumber, "maxChannels"> & { max_channels: number };

export function toMs(value: string | null): number | null {
  return value === null ? null : Number(value);
}

export function rowOrNull(row: LeadRow | undefined): LeadRecord | null {
  return row === undefined ? null : toLead(row);
}

export function toLead(row: LeadRow): LeadRecord {
  return {
    id: row.id,
    phone: row.phone,
    templateId: row.template_id,
    status: row.status,
    outcome: row.outcome,
    attempt: row.attempt,
    notPlacedStreak: row.not_placed_streak,
    claimSeq: row.claim_seq,
    token: row.token,
    owner: row.owner,
    leaseUntil: toMs(row.lease_until),
    nextAttemptAt: Number(row.next_attempt_at),
    dueAt: Number(row.due_at),
    expiresAt: toMs(row.expires_at),
    timeZone: row.time_zone,
    cancelRequested: row.cancel_requested,
    dial:
      row.dial_ref === null
        ? null
        : {
            dialRef: row.dial_ref,
            numberId: row.dial_number_id,
            at: Number(row.dial_at),
            callId: row.dial_call_id,
            unknown: row.dial_unknown,
            recorded: row.dial_recorded,
          },
    payload: row.payload,
    deferReason: row.defer_reason,
    precheckDefers: row.precheck_defers,
    parkedOn: row.park_set,
    parkedAt: toMs(row.parked_at),
    ...(row.blocked !== undefined && { blocked: row.blocked }),
  };
}

export function leadInputRow(input: LeadInput, now: number) {
  return {
    id: input.id,
    phone: input.phone,
    template_id: input.templateId,
    due_at: input.dueAt ?? now,
    expires_at: input.expiresAt ?? null,
    time_zone: input.timeZone ?? null,
    payload: input.payload ?? {},
  };
}

/** Optional fields absent rather than null, exactly as they were upserted. */
export function toTemplate(row: TemplateRow): Template {
  const template: Template = { id: row.id, resellerId: row.reseller_id };
  if (row.number_id !== null) template.numberId = row.number_id;
  if (row.provider !== null) template.provider = row.provider;
  if (row.calling_window !== null) template.window = row.calling_window;
  if (row.retry !== null) template.retry = row.retry;
  if (row.rate_limit_rules !== null) template.rateLimitRules = row.rate_limit_rules;
  if (row.calling_law !== null) Object.assign(template, row.calling_law);
  return template;
}

export function templateRow(t: Template) {
  return {
    id: t.id,
    reseller_id: t.resellerId,
    number_id: t.numberId,
    provider: t.provider,
    calling_window: t.window,
    retry: t.retry,
    rate_limit_rules: t.rateLimitRules,
    calling_law: lawOf(t),
  };
}

function lawOf(t: Template): CallingLaw | undefined {
  const law: Record<string, unknown> = {};
  for (const field of LAW_FIELDS) if (t[field] !== undefined) law[field] = t[field];
  return Object.keys(law).length > 0 ? (law as CallingLaw) : undefined;
}

export function toNumber(row: NumberRow): OutboundNumber {
  return {
    id: row.id,
    e164: row.e164,
    provider: row.provider,
    maxChannels: row.max_channels,
    status: row.status,
    pool: row.pool,
  };
}

export function numberRow(n: OutboundNumber) {
  return {
    id: n.id,
    e164: n.e164,
    provider: n.provider,
    max_channels: n.maxChannels,
    status: n.status,
    pool: n.pool,
  };
}

/** The (scope, id) key of a pause row. */
export function pauseRow(scope: PauseScope): [string, string] {
  if ("global" in scope) return ["global", ""];
  if ("resellerId" in scope) return ["reseller", scope.resellerId];
  return ["template", scope.templateId];
}

export function toPauseScope(scope: string, id: string): PauseScope {
  if (scope === "global") return { global: true };
  return scope === "reseller" ? { resellerId: id } : { templateId: id };
}

/** `leadId:claimSeq` → leadId (ids may contain colons; the sequence never does). */
export function leadIdOf(token: string): string {
  return token.slice(0, token.lastIndexOf(":"));
}

/** A batch submit may name an id twice; like sequential submits, the first one wins. */
export function firstById<T extends { id: string }>(items: T[]): T[] {
  const firsts = new Map<string, T>();
  for (const item of items) if (!firsts.has(item.id)) firsts.set(item.id, item);
  return [...firsts.values()];
}

/** A batch upsert may name an id twice; like sequential upserts, the last one wins. */
export function lastById<T extends { id: string }>(items: T[]): T[] {
  return [...new Map(items.map((item) => [item.id, item])).values()];
}
