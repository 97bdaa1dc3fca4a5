/**
 * The one workload both sides dial: many phones, a few hot ones over the per-phone cap, ample channels.
 * Lead `i` of a run is `<run>-<i>`; the hot phones' leads are spread through the list so that each
 * claim batch or job batch meets some.
 */
import { generatedPhone } from "../../src/cli/simulate/scenario.js";

/** The spec's default rule (design §6), the peer's RateLimiterRedis too. */
export const RULE = { maxCalls: 7, windowSeconds: 3600 } as const;
/** Hot phones and leads per hot phone: each hot phone must turn away leadsPerHotPhone − maxCalls. */
export const HOT = { phones: 10, leadsPerPhone: 10 } as const;
export const NUMBERS = Array.from({ length: 4 }, (_, i) => ({
  id: `bn${i + 1}`,
  e164: `+1555010000${i + 1}`,
  provider: "sim",
  maxChannels: 500,
  status: "AVAILABLE" as const,
  pool: true,
}));
export const TEMPLATE = { id: "bench", resellerId: "bench-reseller" };

export interface BenchLead {
  id: string;
  phone: string;
  dueAt: number;
}

/**
 * `count` leads: `HOT.phones × HOT.leadsPerPhone` of them on the hot phones (when count allows), the
 * rest one phone each. Due at `t0` (peak) or one every `1000 / rate` ms from `t0` (paced).
 */
export function makeLeads(run: string, count: number, t0: number, rate: number | null): BenchLead[] {
  const hotLeads = count >= 20 * HOT.phones * HOT.leadsPerPhone ? HOT.phones * HOT.leadsPerPhone : 0;
  const every = hotLeads > 0 ? Math.floor(count / hotLeads) : 0;
  const leads: BenchLead[] = [];
  let hot = 0;
  let cold = 0;
  for (let i = 0; i < count; i++) {
    const isHot = every > 0 && i % every === 0 && hot < hotLeads;
    const phone = isHot ? generatedPhone(1, hot++ % HOT.phones) : generatedPhone(1, HOT.phones + cold++);
    leads.push({ id: `${run}-${i}`, phone, dueAt: rate === null ? t0 : t0 + Math.floor((i * 1000) / rate) });
  }
  return leads;
}

/** Dials the workload allows: every lead once, except the hot phones' leads past the cap. */
export function expectedDials(leads: BenchLead[]): number {
  const perPhone = new Map<string, number>();
  for (const lead of leads) perPhone.set(lead.phone, (perPhone.get(lead.phone) ?? 0) + 1);
  let dials = 0;
  for (const n of perPhone.values()) dials += Math.min(n, RULE.maxCalls);
  return dials;
}
