import { createHash } from "node:crypto";
import { claimStatements } from "./claim.js";
import { configStatements } from "./config.js";
import { controlStatements } from "./controls.js";
import { dialStatements } from "./dial.js";
import { gateRebuildStatements } from "./gate-rebuild.js";
import { leadStatements } from "./leads.js";
import { waitingStatements } from "./waiting.js";

/** Every statement of the lead store, for the quoted schema `s`; one module per concern. */
export function statements(s: string) {
  return {
    ...leadStatements(s),
    ...claimStatements(s),
    ...dialStatements(s),
    ...waitingStatements(s),
    ...controlStatements(s),
    ...gateRebuildStatements(s),
    ...configStatements(s),
  };
}

export type Statements = ReturnType<typeof statements>;

const statementNames = new Map<string, string>();

/**
 * The name of a statement's prepared form: a digest of its text, so it is stable across processes and
 * each connection parses and plans a statement once.
 */
export function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `dialgate_${createHash("sha1").update(text).digest("hex").slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return name;
}
