import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { simulate, simulateCommand } from "../../src/cli/simulate/index.js";
import { parseScenario } from "../../src/cli/simulate/scenario.js";

const scenario = {
  seed: 5,
  numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 2, pool: true }],
  templates: [{ id: "t1", resellerId: "r1" }],
  leads: [
    { id: "L1", phone: "+919800000001", templateId: "t1" },
    { generate: { count: 10, phones: 4, templateId: "t1", spreadSeconds: 30 } },
  ],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dialgate-simulate-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** Runs the command with stdout and stderr captured. */
async function run(path: string, options: Parameters<typeof simulateCommand>[1] = {}) {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
    stderr += `${args.join(" ")}\n`;
  });
  try {
    const code = await simulateCommand(path, options);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe("dialgate simulate command", () => {
  it("--json prints exactly the report on stdout, and --out writes the same", async () => {
    const path = await file("ok.json", JSON.stringify(scenario));
    const out = join(dir, "report.json");
    const { code, stdout } = await run(path, { json: true, out });
    const expected = await simulate(parseScenario(scenario));

    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(expected);
    expect(JSON.parse(await readFile(out, "utf8"))).toEqual(expected);
  });

  it("without --json prints a summary with totals, invariants and makespan against call time ÷ lines", async () => {
    const { code, stdout } = await run(await file("summary.json", JSON.stringify(scenario)));
    expect(code).toBe(0);
    expect(stdout).toContain("leads              11");
    expect(stdout).toMatch(/invariants\s+ok/);
    expect(stdout).toMatch(/call time ÷ lines\s+495 s ÷ 2 = 247\.5 s/);
  });

  it("reports a JSON syntax error with the file name and exits 2", async () => {
    const path = await file("broken.json", '{ "seed": 1, ');
    const { code, stdout, stderr } = await run(path, { json: true });
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(`${path}: is not valid JSON`);
  });

  it("reports an invalid scenario with the field path and exits 2", async () => {
    const bad = { ...scenario, leads: [{ generate: { count: 0, phones: 1, templateId: "t1" } }] };
    const { code, stderr } = await run(await file("bad.json", JSON.stringify(bad)));
    expect(code).toBe(2);
    expect(stderr).toContain("scenario.leads[0].generate.count must be ≥ 1, got 0");
  });

  it("reports a missing file and exits 2", async () => {
    const { code, stderr } = await run(join(dir, "nope.json"));
    expect(code).toBe(2);
    expect(stderr).toContain("nope.json: cannot read (ENOENT)");
  });

  it("--backend redis exits 2 without REDIS_URL and DATABASE_URL", async () => {
    const saved = { REDIS_URL: process.env.REDIS_URL, DATABASE_URL: process.env.DATABASE_URL };
    delete process.env.REDIS_URL;
    delete process.env.DATABASE_URL;
    try {
      const { code, stdout, stderr } = await run(await file("redis.json", JSON.stringify(scenario)), {
        backend: "redis",
      });
      expect(code).toBe(2);
      expect(stdout).toBe("");
      expect(stderr).toContain("the redis backend needs REDIS_URL and DATABASE_URL");
    } finally {
      for (const [name, value] of Object.entries(saved)) if (value !== undefined) process.env[name] = value;
    }
  });

  it("an unknown backend exits 2 and names the known ones", async () => {
    const { code, stderr } = await run(await file("nope.json", JSON.stringify(scenario)), {
      backend: "mongo",
    });
    expect(code).toBe(2);
    expect(stderr).toContain("unknown backend 'mongo' (memory | redis)");
  });
});
