/** The service part of a run file: provider accounts from the environment, the API token, the routes. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { parseRunFile } from "../../src/cli/run.js";
import {
  apiToken,
  buildProviders,
  createServiceHandler,
  httpSchema,
  providerAccountSchema,
} from "../../src/cli/service.js";
import { createDispatcher } from "../../src/dispatcher.js";
import type { Readiness } from "../../src/infra/backend.js";
import { SystemClock } from "../../src/infra/clock.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";

const logger = pino({ level: "silent" });
const clock = new SystemClock();
const deps = { clock, logger, pacing: new MemoryGateStore() };
const http = httpSchema.parse({ port: 0, publicBaseUrl: "https://dialgate.example.test" });
const TOKEN = "a".repeat(40);
const accounts = (entries: unknown[]) => z.array(providerAccountSchema).parse(entries);

describe("buildProviders", () => {
  it("builds each account with its secrets from the environment and a callback URL per name", () => {
    const setup = buildProviders(
      accounts([
        { type: "twilio", accountSid: `AC${"0".repeat(32)}`, twiml: "<Response/>", pacingWaitMs: 1000 },
        {
          type: "plivo",
          name: "plivo-in",
          authId: "MAXXXXXXXXXXXXXXXXXX",
          answerUrl: "https://ivr.example.test/a",
          callsPerSecond: 2,
          pacingWaitMs: 1000,
        },
      ]),
      http,
      { TWILIO_AUTH_TOKEN: "tw-secret", PLIVO_AUTH_TOKEN: "pl-secret" },
      deps,
    );
    expect(setup.providers.map((p) => p.name)).toEqual(["twilio", "plivo-in"]);
    expect(setup.callbacks.get("twilio")).toEqual({ provider: "twilio", authToken: "tw-secret" });
    expect(setup.callbacks.get("plivo-in")).toEqual({ provider: "plivo", authToken: "pl-secret" });
  });

  it("lists every problem with its field path and no secret", () => {
    let message = "";
    try {
      buildProviders(
        accounts([
          {
            type: "twilio",
            accountSid: `AC${"0".repeat(32)}`,
            pacingWaitMs: 1000,
            twiml: "<Response/>",
            extra: 1,
          },
          { type: "twilio", accountSid: `AC${"0".repeat(32)}`, twiml: "<Response/>", pacingWaitMs: 1000 },
        ]),
        undefined,
        { TWILIO_AUTH_TOKEN: "tw-secret" },
        deps,
      );
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message.split("\n")).toEqual([
      "http.publicBaseUrl must be set: providers post their status callbacks to it",
      'providers[0] has unknown key(s) extra, got "***"',
      'providers[1].name: "twilio" is used twice',
    ]);
    expect(message).not.toContain("tw-secret");
  });
});

describe("apiToken", () => {
  it("refuses a missing or short token while the API is on", () => {
    expect(() => apiToken(http, {})).toThrow(/DIALGATE_API_TOKEN is not set/);
    expect(() => apiToken(http, { DIALGATE_API_TOKEN: "short" })).toThrow(/at least 32 characters/);
    expect(apiToken(http, { DIALGATE_API_TOKEN: TOKEN })).toBe(TOKEN);
    expect(apiToken(httpSchema.parse({ port: 0, api: { enabled: false } }), {})).toBeNull();
  });
});

describe("createServiceHandler", () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  async function serve(token: string | null, readiness: Readiness) {
    const dispatcher = createDispatcher({ logger, templates: [{ id: "tpl-1", resellerId: "r" }] });
    server = createServer(
      createServiceHandler({
        dispatcher,
        http,
        token,
        callbacks: new Map(),
        replayStore: new MemoryGateStore(),
        readiness: async () => readiness,
        clock,
      }),
    );
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it("answers 503 from /readyz when a store is not ready", async () => {
    const base = await serve(TOKEN, { ready: false, redis: false, postgres: true, pendingMigrations: [] });
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ready: false, redis: false });
  });

  it("415 for a non-JSON lead body, 405 for another method, 404 for an unknown route or provider", async () => {
    const base = await serve(TOKEN, { ready: true, redis: true, postgres: true, pendingMigrations: [] });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const form = await fetch(`${base}/leads`, { method: "POST", headers: auth, body: "id=1" });
    expect(form.status).toBe(415);
    expect((await fetch(`${base}/leads`, { headers: auth })).status).toBe(405);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/callbacks/nobody`, { method: "POST" })).status).toBe(404);
  });

  it("with the API off the lead routes do not exist", async () => {
    const base = await serve(null, { ready: true, redis: true, postgres: true, pendingMigrations: [] });
    expect((await fetch(`${base}/leads/x`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});

describe("parseRunFile", () => {
  const account = {
    type: "twilio",
    accountSid: `AC${"0".repeat(32)}`,
    twiml: "<Response/>",
    callsPerSecond: 2,
  };
  const file = (pacingWaitMs: number, timeoutMs: number) =>
    JSON.stringify({ config: { dial: { timeoutMs } }, providers: [{ ...account, pacingWaitMs }] });

  it("refuses a pacing wait as long as the dial timeout: a dial still pacing would be held unknown, never sent", () => {
    expect(() => parseRunFile(file(1000, 1000), "run.json")).toThrow(
      /run\.json: providers\[0\]\.pacingWaitMs.*less than config\.dial\.timeoutMs \(1000\)/,
    );
    expect(parseRunFile(file(999, 1000), "run.json").providers[0]).toMatchObject({ pacingWaitMs: 999 });
  });
});
