/**
 * `dialgate run` as a service, as an operator starts it (node bin/dialgate.js run), on real Redis and
 * Postgres: a Twilio-shaped provider account pointed at a fake Twilio on loopback, leads submitted
 * over HTTP, the call's signed status callback posted to dialgate's HTTP port as Twilio would, and the
 * lead finished. Then the API as the README's curl examples use it: /leads, /metrics, /readyz.
 */
import { createHmac, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { dialgate, RunProcess, waitFor } from "../multiprocess/run-process.js";

const SECRET = "service-test-hmac-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
const API_TOKEN = "service-test-api-token-0123456789abcdef";
const AUTH_TOKEN = "twilio-auth-token-under-test";
const ACCOUNT_SID = `AC${"0123456789abcdef".repeat(2)}`;
/** What Twilio would call: the public URL in front of dialgate (a proxy), which signatures cover. */
const PUBLIC = "https://dialgate.example.test";
const PHONE = "+14155550123";

let redis: RedisServer;
let postgres: PostgresServer;
let tmp: string;
let fake: FakeTwilio;
let run: RunProcess | undefined;
const prefix = `dialgate-test:${randomUUID()}:`;

/** A Twilio Calls API on 127.0.0.1: answers 201 with a call sid and keeps each dial's form. */
class FakeTwilio {
  readonly dials: URLSearchParams[] = [];
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<FakeTwilio> {
    let self: FakeTwilio | undefined;
    const server = createServer(async (req: IncomingMessage, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      const expected = `/2010-04-01/Accounts/${ACCOUNT_SID}/Calls.json`;
      const auth = `Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`;
      if (req.url !== expected || req.headers.authorization !== auth) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"code":20003}');
        return;
      }
      self?.dials.push(new URLSearchParams(body));
      const sid = `CA${randomUUID().replaceAll("-", "")}`;
      res
        .writeHead(201, { "content-type": "application/json" })
        .end(JSON.stringify({ sid, status: "queued" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    self = new FakeTwilio(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function twilioSignature(url: string, params: Record<string, string>): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, name) => acc + name + params[name], url);
  return createHmac("sha1", AUTH_TOKEN).update(data).digest("base64");
}

function runFile(overrides: Record<string, unknown> = {}) {
  return {
    config: { rateLimit: { rules: [{ maxCalls: 5, windowSeconds: 3600 }] } },
    numbers: [{ id: "num-1", e164: "+15550000001", provider: "twilio", maxChannels: 2, pool: true }],
    templates: [{ id: "tpl-1", resellerId: "res-1" }],
    providers: [
      {
        type: "twilio",
        accountSid: ACCOUNT_SID,
        baseUrl: fake.url,
        twiml: "<Response><Say>Your order is confirmed.</Say></Response>",
        callsPerSecond: 5,
      },
    ],
    http: { port: 0, host: "127.0.0.1", publicBaseUrl: PUBLIC },
    ...overrides,
  };
}

async function writeRunFile(name: string, content: unknown): Promise<string> {
  const file = join(tmp, name);
  await writeFile(file, JSON.stringify(content));
  return file;
}

const baseEnv = () => ({
  REDIS_URL: redis.url,
  DATABASE_URL: postgres.url,
  DIALGATE_HMAC_SECRET: SECRET,
  DIALGATE_REDIS_PREFIX: prefix,
  DIALGATE_API_TOKEN: API_TOKEN,
  TWILIO_AUTH_TOKEN: AUTH_TOKEN,
  LOG_LEVEL: "info",
});

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  tmp = await mkdtemp(join(tmpdir(), "dialgate-service-"));
  fake = await FakeTwilio.start();
});

afterAll(async () => {
  run?.kill("SIGKILL");
  await run?.exited;
  await fake?.close();
  if (redis && !redis.disposable) {
    const client = new Redis(redis.url);
    for await (const keys of client.scanStream({ match: `${prefix}*`, count: 1000 })) {
      if ((keys as string[]).length > 0) await client.unlink(...(keys as string[]));
    }
    await client.quit();
  }
  await redis?.stop();
  await postgres?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("dialgate run refuses to start", () => {
  it("without an API token when the lead API is on, or without a provider's credentials: every problem listed", async () => {
    const file = await writeRunFile("refused.json", runFile());
    const env = { ...baseEnv(), DIALGATE_API_TOKEN: "", TWILIO_AUTH_TOKEN: "" };
    const noToken = await dialgate(["run", "--config", file, "--schema", postgres.freshSchema()], env);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("http.api: environment variable DIALGATE_API_TOKEN is not set");

    const withToken = { ...env, DIALGATE_API_TOKEN: API_TOKEN };
    const noCredentials = await dialgate(["run", "--config", file, "--schema", postgres.freshSchema()], {
      ...withToken,
    });
    expect(noCredentials.code).toBe(2);
    expect(noCredentials.stderr).toContain(
      "providers[0].authTokenEnv: environment variable TWILIO_AUTH_TOKEN is not set",
    );

    const bad = await writeRunFile(
      "bad.json",
      runFile({
        providers: [
          { type: "twilio", accountSid: "nope", twiml: "<Response/>" },
          { type: "exotel", accountSid: "acme", flowUrl: "https://my.exotel.com/flow", name: "exo" },
        ],
      }),
    );
    const listed = await dialgate(["run", "--config", bad, "--schema", postgres.freshSchema()], {
      ...baseEnv(),
      EXOTEL_API_KEY: "key",
      EXOTEL_API_TOKEN: "",
    });
    expect(listed.code).toBe(2);
    expect(listed.stderr).toContain("providers[0].accountSid must be AC followed by 32 hex digits");
    expect(listed.stderr).toContain(
      "providers[1].apiTokenEnv: environment variable EXOTEL_API_TOKEN is not set",
    );
    expect(listed.stderr).toContain(
      "providers[1].callbackSecretEnv: environment variable EXOTEL_CALLBACK_SECRET is not set",
    );
    // Secrets never appear in what it prints.
    expect(listed.stderr).not.toContain(AUTH_TOKEN);
  });
});

describe("dialgate run as a service", () => {
  let base = "";
  const api = (path: string, init: RequestInit = {}, token = API_TOKEN) =>
    fetch(`${base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers },
    });

  beforeAll(async () => {
    const file = await writeRunFile("service.json", runFile());
    run = new RunProcess(
      "service",
      ["--config", file, "--schema", postgres.freshSchema(), "--migrate", "--sweep-every-ms", "1000"],
      baseEnv(),
    );
    await run.started();
    await waitFor(() => (run as RunProcess).log.includes('"msg":"http served"'), {
      timeoutMs: 20_000,
      what: "the HTTP server",
    });
    const line = (run.log.split("\n").find((l) => l.includes('"msg":"http served"')) as string).trim();
    base = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
  });

  it("places the call through the Twilio account, takes its signed callback and finishes the lead", async () => {
    const submitted = await api("/leads", {
      method: "POST",
      body: JSON.stringify({ id: "lead-1", phone: PHONE, templateId: "tpl-1" }),
    });
    expect(submitted.status).toBe(200);
    const body = (await submitted.json()) as { lead: { id: string; status: string } };
    expect(body.lead.id).toBe("lead-1");
    expect(JSON.stringify(body)).not.toContain(PHONE);

    await waitFor(() => fake.dials.length === 1, { timeoutMs: 20_000, what: "the dial at the fake Twilio" });
    const dial = fake.dials[0] as URLSearchParams;
    expect(dial.get("To")).toBe(PHONE);
    expect(dial.get("From")).toBe("+15550000001");
    const callbackUrl = dial.get("StatusCallback") as string;
    expect(callbackUrl.startsWith(`${PUBLIC}/callbacks/twilio?dialRef=`)).toBe(true);

    await waitFor(
      async () =>
        ((await (await api("/leads/lead-1")).json()) as { lead: { status: string } }).lead.status ===
        "PROCESSING",
      {
        timeoutMs: 20_000,
        what: "lead-1 PROCESSING",
      },
    );
    // Twilio's terminal callback, signed over the public URL, delivered to dialgate's own port.
    const form = { CallSid: "CA1", CallStatus: "completed", AccountSid: ACCOUNT_SID, To: PHONE };
    const path = callbackUrl.slice(PUBLIC.length);
    const post = (signature: string) =>
      fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature },
        body: new URLSearchParams(form).toString(),
      });
    expect((await post("bm90IGEgc2lnbmF0dXJl")).status).toBe(403);
    expect((await post(twilioSignature(callbackUrl, form))).status).toBe(200);
    expect((await post(twilioSignature(callbackUrl, form))).status).toBe(409);

    const finished = (await (await api("/leads/lead-1")).json()) as {
      lead: { status: string; outcome: string };
    };
    expect(finished.lead).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
  });

  it("POST /leads: idempotent by id, an array at once, 400 with the field path, 401 without the token", async () => {
    const again = await api("/leads", {
      method: "POST",
      body: JSON.stringify({ id: "lead-1", phone: PHONE, templateId: "tpl-1" }),
    });
    expect(((await again.json()) as { lead: { status: string } }).lead.status).toBe("FINISHED");

    const later = Date.now() + 3_600_000;
    const many = await api("/leads", {
      method: "POST",
      body: JSON.stringify([
        { id: "lead-2", phone: "+14155552671", templateId: "tpl-1", dueAt: later },
        { id: "lead-3", phone: "+12025550143", templateId: "tpl-1", dueAt: later },
      ]),
    });
    expect(many.status).toBe(200);
    expect(((await many.json()) as { leads: unknown[] }).leads).toHaveLength(2);

    const bad = await api("/leads", {
      method: "POST",
      body: JSON.stringify([
        { id: "lead-4", phone: PHONE, templateId: "tpl-1" },
        { id: "lead-5", phone: "+1" },
      ]),
    });
    expect(bad.status).toBe(400);
    const problem = (await bad.json()) as { path: string; error: string };
    expect(problem.path).toMatch(/^leads\[1\]\./);
    expect((await api("/leads/lead-4")).status).toBe(404);

    expect((await api("/leads", { method: "POST", body: "{" })).status).toBe(400);
    expect((await api("/leads/lead-1", {}, "wrong-token")).status).toBe(401);
    expect((await fetch(`${base}/leads/lead-1`)).status).toBe(401);
  });

  it("DELETE /leads/:id cancels; POST /pause and /resume answer", async () => {
    const cancelled = await api("/leads/lead-2", { method: "DELETE" });
    expect(((await cancelled.json()) as { lead: unknown }).lead).toMatchObject({
      status: "FINISHED",
      outcome: "CANCELLED",
    });
    expect((await api("/leads/nobody", { method: "DELETE" })).status).toBe(404);
    expect(await (await api("/pause", { method: "POST", body: "" })).json()).toEqual({ paused: true });
    expect(
      await (await api("/resume", { method: "POST", body: JSON.stringify({ global: true }) })).json(),
    ).toEqual({
      resumed: true,
    });
    expect((await api("/pause", { method: "POST", body: JSON.stringify({ everything: 1 }) })).status).toBe(
      400,
    );
  });

  it("a body over the limit is refused before it is read whole", async () => {
    // Only the headers and the first KiB of a 2 MiB body are sent: the answer comes without the rest.
    // (A client that keeps writing after the refusal may meet the closed socket before it reads it.)
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/leads`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${API_TOKEN}`,
          "content-type": "application/json",
          "content-length": 2 * 1024 * 1024,
        },
      });
      req.on("response", (res) => {
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      req.write("x".repeat(1024));
    });
    expect(status).toBe(413);
  });

  it("GET /metrics, /healthz and /readyz need no token", async () => {
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const text = await metrics.text();
    expect(text).toMatch(/^dialgate_calls_placed_total 1$/m);
    expect(text).toMatch(/^dialgate_leads_finished_total\{outcome="ANSWERED"\} 1$/m);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, redis: true, postgres: true, pendingMigrations: [] });
  });

  it("SIGTERM stops it cleanly", async () => {
    const service = run as RunProcess;
    service.kill("SIGTERM");
    expect((await service.exited).code).toBe(0);
    expect(service.log).not.toContain(PHONE);
    expect(service.log).not.toContain(AUTH_TOKEN);
    expect(service.log).not.toContain(API_TOKEN);
  });
});
