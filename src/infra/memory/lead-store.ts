import { isDeepStrictEqual } from "node:util";
import type {
  CooldownRule,
  DeferReason,
  DialInfo,
  DialRow,
  GateRebuildRows,
  LeadInput,
  LeadRecord,
  LeadStore,
  OutboundNumber,
  Pause,
  PauseScope,
  Settled,
  Settlement,
  Template,
} from "../../machines/ports.js";
import { SETTLES_FROM } from "../../machines/ports.js";
import { templateCooldowns, templatesWindowMs } from "../calling-law.js";
import { parseDialRef } from "../dial-ref.js";

/** A dial row: the lead's dial, and how and when its call ended (design §7.13 rebuilds from these). */
interface Dial {
  leadId: string;
  dial: DialInfo;
  ended: { outcome: string; at: number } | null;
}

/** Leads, templates, numbers and the block list in one process: the embedded default. */
export class MemoryLeadStore implements LeadStore {
  #leads = new Map<string, LeadRecord>();
  #templates = new Map<string, Template>();
  #numbers = new Map<string, OutboundNumber>();
  #blocked = new Set<string>();
  #byDial = new Map<string, string>();
  /**
   * Every dial ever begun, by its claim token (a lead row keeps only its last): the rate-limit rebuild
   * counts them all.
   */
  #dials = new Map<string, Dial>();
  /** Ids of the parked leads (parkedOn set). */
  #parked = new Set<string>();
  /** The parked leads by each number of their set. */
  #parkedOn = new Map<string, Set<string>>();
  /** Every lead of a phone. */
  #byPhone = new Map<string, LeadRecord[]>();
  /** Pauses in force, by `pauseKey`. */
  #pauses = new Map<string, Pause>();

  async submit(inputs: LeadInput[], now: number): Promise<LeadRecord[]> {
    return inputs.map((input) => {
      const existing = this.#leads.get(input.id);
      if (existing) return structuredClone(existing);
      const lead: LeadRecord = {
        id: input.id,
        phone: input.phone,
        templateId: input.templateId,
        status: "SCHEDULED",
        outcome: null,
        attempt: 0,
        notPlacedStreak: 0,
        claimSeq: 0,
        token: null,
        owner: null,
        leaseUntil: null,
        nextAttemptAt: input.dueAt ?? now,
        dueAt: input.dueAt ?? now,
        expiresAt: input.expiresAt ?? null,
        timeZone: input.timeZone ?? null,
        cancelRequested: false,
        dial: null,
        payload: input.payload ?? {},
        deferReason: null,
        precheckDefers: 0,
        parkedOn: null,
        parkedAt: null,
      };
      this.#leads.set(lead.id, lead);
      const ofPhone = this.#byPhone.get(lead.phone);
      if (ofPhone) ofPhone.push(lead);
      else this.#byPhone.set(lead.phone, [lead]);
      return structuredClone(lead);
    });
  }

  async get(id: string): Promise<LeadRecord | null> {
    const lead = this.#leads.get(id);
    return lead ? structuredClone(lead) : null;
  }

  async claimDue(owner: string, now: number, limit: number, leaseMs: number): Promise<LeadRecord[]> {
    for (const lead of this.#leads.values()) {
      if (lead.status === "DIALING" && (lead.leaseUntil ?? 0) <= now) this.#toUnknown(lead);
    }
    // The set each template's leads wait on (its latest park), for the leads that join their line.
    const waitingOn = new Map<string, { set: string[]; at: number }>();
    for (const id of this.#parked) {
      const l = this.#leads.get(id) as LeadRecord;
      const seen = waitingOn.get(l.templateId);
      if (!seen || (l.parkedAt ?? 0) > seen.at)
        waitingOn.set(l.templateId, { set: l.parkedOn as string[], at: l.parkedAt ?? 0 });
    }
    const due = [...this.#leads.values()]
      .filter(
        (l) =>
          ((l.status === "SCHEDULED" &&
            (l.parkedOn === null ? l.nextAttemptAt <= now : l.expiresAt !== null && l.expiresAt <= now)) ||
            (l.status === "CLAIMED" && (l.leaseUntil ?? 0) <= now)) &&
          !this.#isPaused(l),
      )
      .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1));
    const claims: LeadRecord[] = [];
    for (const lead of due) {
      const waiting = waitingOn.get(lead.templateId);
      if (lead.status === "SCHEDULED" && lead.parkedOn === null && lead.parkedAt === null && waiting) {
        this.#park(lead, waiting.set, now);
        continue;
      }
      if (claims.length < limit) claims.push(lead);
    }
    return claims.map((lead) => {
      lead.claimSeq += 1;
      lead.token = `${lead.id}:${lead.claimSeq}`;
      lead.status = "CLAIMED";
      lead.owner = owner;
      lead.leaseUntil = now + leaseMs;
      lead.deferReason = null;
      this.#unpark(lead);
      return { ...structuredClone(lead), blocked: this.#blocked.has(lead.phone) };
    });
  }

  async nextDueAt(): Promise<number | null> {
    let next: number | null = null;
    for (const lead of this.#leads.values()) {
      if (lead.status !== "SCHEDULED" || this.#isPaused(lead)) continue;
      const at = lead.parkedOn === null ? lead.nextAttemptAt : lead.expiresAt;
      if (at !== null && (next === null || at < next)) next = at;
    }
    return next;
  }

  async renewLeases(tokens: string[], leaseUntil: number): Promise<void> {
    for (const token of tokens) {
      const lead = this.#byToken(token);
      if (lead && (lead.status === "CLAIMED" || lead.status === "DIALING")) lead.leaseUntil = leaseUntil;
    }
  }

  async beginDial(token: string, row: DialRow): Promise<boolean> {
    const lead = this.#byToken(token);
    if (lead?.status !== "CLAIMED") return false;
    lead.status = "DIALING";
    lead.precheckDefers = 0;
    lead.parkedAt = null;
    lead.dial = { ...row, callId: null, unknown: false };
    // The same object as the lead's: settles that mark it placed or unknown show here too.
    this.#dials.set(token, { leadId: lead.id, dial: lead.dial, ended: null });
    this.#byDial.set(`ref:${row.dialRef}`, lead.id);
    return true;
  }

  async settle(token: string, s: Settlement, now: number): Promise<Settled | null> {
    const lead = this.#byToken(token);
    if (!lead || !SETTLES_FROM[s.kind].includes(lead.status)) return null;
    if (s.kind === "unknown" && !lead.dial) return null;
    switch (s.kind) {
      case "defer":
        if (lead.cancelRequested) {
          this.#finish(lead, "CANCELLED");
          break;
        }
        this.#schedule(lead, s.at);
        lead.deferReason = s.deferReason ?? null;
        if (s.parkOn) this.#park(lead, s.parkOn, now);
        else lead.parkedAt = null;
        if (s.notPlacedStreak !== undefined) lead.notPlacedStreak = s.notPlacedStreak;
        if (s.precheckDefers !== undefined) lead.precheckDefers = s.precheckDefers;
        break;
      case "finish":
        this.#finish(lead, s.outcome);
        break;
      case "placed":
        lead.status = "PROCESSING";
        lead.notPlacedStreak = 0;
        if (lead.dial) lead.dial.callId = s.callId;
        this.#byDial.set(`call:${s.callId}`, lead.id);
        break;
      case "unknown":
        this.#toUnknown(lead);
        break;
      case "ended": {
        // The dial row of this claim remembers how and when its call ended (cooldowns, design §7.6).
        const dial = this.#dials.get(token);
        if (dial) dial.ended = { outcome: s.outcome, at: now };
        if (lead.cancelRequested) this.#finish(lead, "CANCELLED");
        else if (s.retryAt !== undefined) {
          lead.attempt += 1;
          lead.dueAt = s.retryAt;
          this.#schedule(lead, s.retryAt);
        } else this.#finish(lead, s.outcome);
        break;
      }
      case "unknownExpired":
        if (!lead.dial?.unknown) return null;
        if (lead.cancelRequested) this.#finish(lead, "CANCELLED");
        else this.#schedule(lead, s.at);
        break;
    }
    return { status: lead.status, outcome: lead.outcome };
  }

  async endDial(dialRef: string, outcome: string, at: number): Promise<boolean> {
    const dial = this.#dials.get(parseDialRef(dialRef).token);
    if (!dial || dial.dial.dialRef !== dialRef || dial.ended) return false;
    dial.ended = { outcome, at };
    return true;
  }

  async expedite(id: string, at: number): Promise<boolean> {
    const lead = this.#leads.get(id);
    if (lead?.status !== "SCHEDULED" || lead.nextAttemptAt <= at) return false;
    lead.nextAttemptAt = at;
    return true;
  }

  async wakeParked(templateId: string, reason: DeferReason, at: number): Promise<number> {
    let woken = 0;
    for (const lead of this.#leads.values()) {
      if (lead.templateId !== templateId || lead.status !== "SCHEDULED" || lead.deferReason !== reason)
        continue;
      if (lead.nextAttemptAt <= at) continue;
      lead.nextAttemptAt = at;
      woken += 1;
    }
    return woken;
  }

  async wakeWaiters(numberId: string, count: number, now: number): Promise<string[]> {
    if (count <= 0) return [];
    // Each phone's waiters in park order; a phone's turn = its leads woken or being dialled (they
    // went first) + its waiters ahead of this one.
    const byPhone = new Map<string, LeadRecord[]>();
    for (const id of this.#parkedOn.get(numberId) ?? []) {
      const lead = this.#leads.get(id) as LeadRecord;
      if (this.#isPaused(lead)) continue;
      const list = byPhone.get(lead.phone);
      if (!list) byPhone.set(lead.phone, [lead]);
      // One line (the common case) needs each phone's first waiter only.
      else if (count > 1) list.push(lead);
      else if (byParkOrder(lead, list[0] as LeadRecord) < 0) list[0] = lead;
    }
    const turn = new Map<string, number>();
    for (const phone of byPhone.keys()) {
      let served = 0;
      for (const lead of this.#byPhone.get(phone) ?? []) if (isServed(lead)) served += 1;
      turn.set(phone, served);
    }
    if (count > 1) for (const list of byPhone.values()) list.sort(byParkOrder);
    const picked: LeadRecord[] = [];
    while (picked.length < count) {
      let best: { phone: string; lead: LeadRecord; turn: number } | undefined;
      for (const [phone, list] of byPhone) {
        const head = list[0] as LeadRecord;
        const t = turn.get(phone) ?? 0;
        if (!best || t < best.turn || (t === best.turn && byParkOrder(head, best.lead) < 0))
          best = { phone, lead: head, turn: t };
      }
      if (!best) break;
      picked.push(best.lead);
      const list = byPhone.get(best.phone) as LeadRecord[];
      list.shift();
      if (list.length === 0) byPhone.delete(best.phone);
      turn.set(best.phone, best.turn + 1);
    }
    return picked.map((lead) => {
      this.#unpark(lead);
      lead.nextAttemptAt = Math.min(lead.nextAttemptAt, now);
      return lead.id;
    });
  }

  async waitingCount(): Promise<number> {
    return this.#parked.size;
  }

  async waitingSets(): Promise<{ numberIds: string[]; waiters: number }[]> {
    const sets = new Map<string, { numberIds: string[]; waiters: number }>();
    for (const id of this.#parked) {
      const set = (this.#leads.get(id) as LeadRecord).parkedOn as string[];
      const key = set.join("\n");
      const entry = sets.get(key) ?? { numberIds: [...set], waiters: 0 };
      entry.waiters += 1;
      sets.set(key, entry);
    }
    return [...sets.values()];
  }

  async pause(scope: PauseScope, now: number): Promise<boolean> {
    const key = pauseKey(scope);
    if (this.#pauses.has(key)) return false;
    this.#pauses.set(key, { scope: normalScope(scope), pausedAt: now });
    return true;
  }

  async resume(scope: PauseScope): Promise<boolean> {
    return this.#pauses.delete(pauseKey(scope));
  }

  async pauses(): Promise<Pause[]> {
    return [...this.#pauses.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, pause]) => structuredClone(pause));
  }

  async findByDial(ref: { callId?: string; dialRef?: string }): Promise<LeadRecord | null> {
    const id =
      (ref.dialRef && this.#byDial.get(`ref:${ref.dialRef}`)) ||
      (ref.callId && this.#byDial.get(`call:${ref.callId}`));
    return id ? this.get(id) : null;
  }

  async cancel(id: string, _now: number): Promise<LeadRecord | null> {
    const lead = this.#leads.get(id);
    if (!lead) return null;
    if (lead.status === "SCHEDULED" || lead.status === "CLAIMED") this.#finish(lead, "CANCELLED");
    else if (lead.status !== "FINISHED") lead.cancelRequested = true;
    return structuredClone(lead);
  }

  async expiredUnknownDials(dialAtOrBefore: number): Promise<LeadRecord[]> {
    return [...this.#leads.values()]
      .filter((l) => l.status === "PROCESSING" && l.dial?.unknown && l.dial.at <= dialAtOrBefore)
      .map((l) => structuredClone(l));
  }

  async overdueCalls(dialAtOrBefore: number): Promise<LeadRecord[]> {
    return [...this.#leads.values()]
      .filter((l) => l.status === "PROCESSING" && l.dial && !l.dial.unknown && l.dial.at <= dialAtOrBefore)
      .map((l) => structuredClone(l));
  }

  async list(): Promise<LeadRecord[]> {
    return [...this.#leads.values()].map((l) => structuredClone(l));
  }

  async gateRebuildRows(
    now: number,
    windowMs: number | null,
    cooling?: { ms: number; outcomes: string[] },
  ): Promise<GateRebuildRows> {
    const leads = [...this.#leads.values()];
    const claims = leads
      .filter((l) => l.status === "CLAIMED")
      .map((l) => ({ token: l.token as string, leaseUntil: l.leaseUntil ?? 0 }));
    const liveDials = leads
      .filter((l) => (l.status === "DIALING" || l.status === "PROCESSING") && l.dial)
      .map((l) => ({
        token: l.token as string,
        numberId: l.dial?.numberId as string,
        at: l.dial?.at as number,
      }));
    const numberIds = [...this.#numbers.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const phoneOf = (leadId: string) => (this.#leads.get(leadId) as LeadRecord).phone;
    // The sweep reads without `cooling` twice a round: it walks no dial.
    const endedCalls = !cooling?.outcomes.length
      ? []
      : [...this.#dials.values()].flatMap(({ leadId, ended }) =>
          ended && cooling.outcomes.includes(ended.outcome) && ended.at > now - cooling.ms
            ? [{ phone: phoneOf(leadId), ...ended }]
            : [],
        );
    if (windowMs === null) return { numberIds, claims, liveDials, countedDials: [], windowMs: 0, endedCalls };

    const window = Math.max(windowMs, this.#templateWindowMs());
    const countedDials = [...this.#dials]
      .filter(([, { leadId, dial }]) => {
        if (dial.at <= now - window) return false;
        const lead = this.#leads.get(leadId) as LeadRecord;
        const dialling = lead.dial === dial && lead.status === "DIALING";
        return dial.callId !== null || dial.unknown || dialling;
      })
      .map(([token, { leadId, dial }]) => ({ token, phone: phoneOf(leadId), at: dial.at }));
    return { numberIds, claims, liveDials, countedDials, windowMs: window, endedCalls };
  }

  async templateWindowMs(): Promise<number> {
    return this.#templateWindowMs();
  }

  #templateWindowMs(): number {
    return templatesWindowMs(this.#templates.values());
  }

  async templateCooldowns(): Promise<CooldownRule[]> {
    return structuredClone([...this.#templates.values()].flatMap(templateCooldowns));
  }

  async template(id: string): Promise<Template | null> {
    const template = this.#templates.get(id);
    return template ? structuredClone(template) : null;
  }

  async number(id: string): Promise<OutboundNumber | null> {
    const number = this.#numbers.get(id);
    return number ? structuredClone(number) : null;
  }

  async poolNumbers(provider?: string): Promise<OutboundNumber[]> {
    return [...this.#numbers.values()]
      .filter(
        (n) => n.pool && n.status === "AVAILABLE" && (provider === undefined || n.provider === provider),
      )
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async isBlocked(phone: string): Promise<boolean> {
    return this.#blocked.has(phone);
  }

  async upsertTemplates(templates: Template[]): Promise<string[]> {
    const before = new Map<string, Template | undefined>();
    for (const t of templates) {
      if (!before.has(t.id)) before.set(t.id, this.#templates.get(t.id));
      this.#templates.set(t.id, structuredClone(t));
    }
    return [...before]
      .filter(
        ([id, old]) =>
          old !== undefined && !isDeepStrictEqual(windowOf(old), windowOf(this.#templates.get(id))),
      )
      .map(([id]) => id);
  }

  async upsertNumbers(numbers: OutboundNumber[]): Promise<void> {
    for (const n of numbers) this.#numbers.set(n.id, structuredClone(n));
  }

  async block(phones: string[]): Promise<void> {
    for (const p of phones) this.#blocked.add(p);
  }

  async close(): Promise<void> {}

  /** Paused globally, by its template, or by its template's reseller. */
  #isPaused(lead: LeadRecord): boolean {
    if (this.#pauses.size === 0) return false;
    if (this.#pauses.has(pauseKey({ global: true }))) return true;
    if (this.#pauses.has(pauseKey({ templateId: lead.templateId }))) return true;
    const resellerId = this.#templates.get(lead.templateId)?.resellerId;
    return resellerId !== undefined && this.#pauses.has(pauseKey({ resellerId }));
  }

  #byToken(token: string): LeadRecord | undefined {
    const lead = this.#leads.get(token.slice(0, token.lastIndexOf(":")));
    return lead?.token === token ? lead : undefined;
  }

  #schedule(lead: LeadRecord, at: number): void {
    lead.status = "SCHEDULED";
    lead.nextAttemptAt = at;
    lead.owner = null;
    lead.leaseUntil = null;
  }

  /** Parked on `set`; a lead woken earlier in this wait keeps its place (parkedAt). */
  #park(lead: LeadRecord, set: string[], now: number): void {
    this.#unpark(lead);
    lead.parkedOn = [...set].sort();
    for (const n of lead.parkedOn) {
      const waiting = this.#parkedOn.get(n);
      if (waiting) waiting.add(lead.id);
      else this.#parkedOn.set(n, new Set([lead.id]));
    }
    lead.parkedAt ??= now;
    lead.deferReason = "channel";
    this.#parked.add(lead.id);
  }

  #unpark(lead: LeadRecord): void {
    for (const n of lead.parkedOn ?? []) this.#parkedOn.get(n)?.delete(lead.id);
    lead.parkedOn = null;
    this.#parked.delete(lead.id);
  }

  #finish(lead: LeadRecord, outcome: string): void {
    this.#unpark(lead);
    lead.status = "FINISHED";
    lead.outcome = outcome;
    lead.owner = null;
    lead.leaseUntil = null;
  }

  #toUnknown(lead: LeadRecord): void {
    lead.status = "PROCESSING";
    lead.owner = null;
    lead.leaseUntil = null;
    if (lead.dial) lead.dial.unknown = true;
  }
}

/** Woken from a park and not yet dialled, claimed, or dialling or in a call: its phone was served. */
function isServed(lead: LeadRecord): boolean {
  if (lead.status === "SCHEDULED") return lead.parkedOn === null && lead.parkedAt !== null;
  return lead.status === "CLAIMED" || lead.status === "DIALING" || lead.status === "PROCESSING";
}

/** Longest-waiting first: by parkedAt, then dueAt, then id. */
function byParkOrder(a: LeadRecord, b: LeadRecord): number {
  return (
    (a.parkedAt ?? 0) - (b.parkedAt ?? 0) || a.dueAt - b.dueAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

/** Sorts global first, then resellers, then templates, each by id (as the Postgres store lists them). */
function pauseKey(scope: PauseScope): string {
  if ("global" in scope) return "0:";
  if ("resellerId" in scope) return `1:${scope.resellerId}`;
  return `2:${scope.templateId}`;
}

/** Only the field that names the scope (a caller's object may carry more). */
function normalScope(scope: PauseScope): PauseScope {
  if ("global" in scope) return { global: true };
  if ("resellerId" in scope) return { resellerId: scope.resellerId };
  return { templateId: scope.templateId };
}

/** What decides when a template's leads may be called: its window, regions and presets (design §7.8). */
function windowOf(t: Template | undefined) {
  return [t?.window, t?.regions, t?.presets];
}
