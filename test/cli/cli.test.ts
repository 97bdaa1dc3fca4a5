/**
 * The CLI behaves like its neighbours: --version, every bad field listed with its path, exit code 2
 * for usage and input errors and 1 for failures at run time, worded `dialgate: …` in every command;
 * viz writes where it is told (the current directory by default), and a short HMAC secret is refused.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { describeFailure, EXIT_RUNTIME, EXIT_USAGE, UsageError } from "../../src/cli/errors.js";
import { weakHmacSecret } from "../../src/cli/migrate.js";
import { parseRunFile, runCommand } from "../../src/cli/run.js";
import { simulateCommand } from "../../src/cli/simulate/index.js";
import { defaultVizDir } from "../../src/cli/viz.js";
import { ValidationError } from "../../src/infra/config.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(REPO, "bin", "dialgate.js");
const exec = promisify(execFile);

/** `node bin/dialgate.js <args>` in `cwd`: its exit code and output. */
async function dialgate(args: string[], cwd = REPO) {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BIN, ...args], { cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw error;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** console.error lines while `run` runs. */
async function stderrOf(run: () => Promise<number>): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
    lines.push(args.join(" "));
  });
  try {
    return { code: await run(), lines };
  } finally {
    spy.mockRestore();
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dialgate-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("validation errors list every bad field", () => {
  const threeBad = {
    config: { concurrency: 0 },
    numbers: [{ id: "n1", e164: "15550000001", provider: "sim", maxChannels: 1 }],
    templates: [{ id: "t1", resellerId: "r1", window: { start: "9:00", end: "17:00", timeZone: "UTC" } }],
  };

  it("a run file with three bad fields names all three, each with the file and its path", () => {
    const error = (() => {
      try {
        parseRunFile(JSON.stringify(threeBad), "run.json");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    const { lines, code } = describeFailure(error);
    expect(code).toBe(EXIT_USAGE);
    expect(lines).toEqual([
      "run.json: config.concurrency must be ≥ 1, got 0",
      'run.json: numbers[0].e164 must be an E.164 number such as +15550000001, got "***0001"',
      'run.json: templates[0].window.start must be HH:MM (24 h), got "9:00"',
    ]);
  });

  it("a run file that is not JSON is an input error (exit 2), worded as simulate words it", () => {
    expect(() => parseRunFile("{", "run.json")).toThrow(UsageError);
    expect(() => parseRunFile("{", "run.json")).toThrow(/^run\.json: is not valid JSON: /);
  });

  it("simulate prints one line per bad field of the scenario and exits 2", async () => {
    const path = join(dir, "bad-scenario.json");
    await writeFile(
      path,
      JSON.stringify({
        seed: 1.5,
        untilSeconds: -1,
        leads: [{ generate: { count: 0, phones: 1, templateId: "t" } }],
      }),
    );
    const { code, lines } = await stderrOf(() => simulateCommand(path, { json: true }));
    expect(code).toBe(EXIT_USAGE);
    expect(lines).toEqual([
      `dialgate: ${path}: scenario.seed must be int, got 1.5`,
      `dialgate: ${path}: scenario.untilSeconds must be > 0, got -1`,
      `dialgate: ${path}: scenario.leads[0].generate.count must be ≥ 1, got 0`,
    ]);
  });

  it("the message of a ValidationError carries every issue; its first is still path, value, problem", () => {
    const error = ValidationError.of([
      { path: "a", value: 1, problem: "must be ≥ 2" },
      { path: "b", value: "x", problem: "must be a number" },
    ]);
    expect(error.message).toBe('a must be ≥ 2, got 1; b must be a number, got "x"');
    expect([error.path, error.value, error.problem]).toEqual(["a", 1, "must be ≥ 2"]);
  });

  it("a failure at run time exits 1 with its message", () => {
    expect(describeFailure(new Error("redis went away"))).toEqual({
      lines: ["redis went away"],
      code: EXIT_RUNTIME,
    });
  });
});

describe("DIALGATE_HMAC_SECRET", () => {
  it("shorter than 64 characters is refused with a sentence that says how to make one", () => {
    expect(weakHmacSecret("abc")).toBe(
      "dialgate: DIALGATE_HMAC_SECRET is too short (3 characters): it needs at least 64, " +
        "e.g. 32 random bytes as hex from `openssl rand -hex 32`.",
    );
    expect(weakHmacSecret("0123456789abcdef".repeat(4))).toBeNull();
  });

  it("`run` refuses a short one with exit 2 before it connects to anything", async () => {
    const env = {
      DIALGATE_HMAC_SECRET: "abc",
      REDIS_URL: "redis://invalid.test:1",
      DATABASE_URL: "postgres://x",
    };
    const { code, lines } = await stderrOf(() =>
      runCommand({ schema: "dialgate", prefix: "dialgate:", sweepEveryMs: 5000 }, env),
    );
    expect(code).toBe(EXIT_USAGE);
    expect(lines.join("\n")).toContain("DIALGATE_HMAC_SECRET is too short (3 characters)");
  });
});

describe("viz output directory", () => {
  it("is the current directory by default, docs/ only at the root of a dialgate checkout", () => {
    expect(defaultVizDir(dir)).toBe(dir);
    expect(defaultVizDir(REPO)).toBe(join(REPO, "docs"));
  });
});

describe("the dialgate bin", () => {
  it("--version prints the package's version and exits 0", async () => {
    const { version } = JSON.parse(await readFile(join(REPO, "package.json"), "utf8")) as { version: string };
    const { code, stdout } = await dialgate(["--version"]);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(version);
  });

  it("an unknown option and a bad option value are usage errors: exit 2, worded `dialgate: …`", async () => {
    const unknown = await dialgate(["demo", "--bogus"]);
    expect(unknown.code).toBe(EXIT_USAGE);
    expect(unknown.stderr).toMatch(/^dialgate: unknown option '--bogus'/);
    const badValue = await dialgate(["run", "--sweep-every-ms", "0"]);
    expect(badValue.code).toBe(EXIT_USAGE);
    expect(badValue.stderr).toMatch(/^dialgate: option '--sweep-every-ms <ms>' argument '0' is invalid/);
  });

  it("viz writes both diagrams into the current directory when not told otherwise", async () => {
    const { code, stderr } = await dialgate(["viz"], dir);
    expect(code).toBe(0);
    expect(stderr).toContain("lead-machine.html");
    expect(await readFile(join(dir, "lead-machine.md"), "utf8")).toContain("stateDiagram-v2");
    expect((await dialgate(["viz", "--check"], dir)).code).toBe(0);
  });
});
