import { CommanderError } from "commander";
import { formatIssue, ValidationError } from "../infra/config.js";

/**
 * How every dialgate command ends on an error, as its neighbours do: exit code 2 for usage and
 * input errors (unknown option, bad value, unreadable or invalid file, missing environment), 1 for
 * failures at run time; each problem on its own stderr line starting `dialgate: `.
 */
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

/** Most issues of one ValidationError printed; a file of 10,000 bad leads need not print them all. */
const MAX_ISSUE_LINES = 50;

/** Bad input the user can fix: exit code 2. */
export class UsageError extends Error {
  override readonly name: string = "UsageError";
}

/** The stderr lines (without the `dialgate: ` prefix) and exit code of an error that ends a command. */
export function describeFailure(error: unknown, prefix = ""): { lines: string[]; code: number } {
  if (error instanceof ValidationError) {
    const lines = error.issues.slice(0, MAX_ISSUE_LINES).map((issue) => prefix + formatIssue(issue));
    if (error.issues.length > MAX_ISSUE_LINES)
      lines.push(`${prefix}and ${error.issues.length - MAX_ISSUE_LINES} more`);
    return { lines, code: EXIT_USAGE };
  }
  if (error instanceof UsageError) return { lines: [prefix + error.message], code: EXIT_USAGE };
  // Commander printed its own message (through outputError) before throwing.
  if (error instanceof CommanderError) return { lines: [], code: error.exitCode === 0 ? 0 : EXIT_USAGE };
  return { lines: [prefix + (error instanceof Error ? error.message : String(error))], code: EXIT_RUNTIME };
}

/** Prints an error the dialgate way and returns its exit code. */
export function reportFailure(error: unknown, prefix = ""): number {
  const { lines, code } = describeFailure(error, prefix);
  for (const line of lines) console.error(`dialgate: ${line}`);
  return code;
}
