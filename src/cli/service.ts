/**
 * What `dialgate run` serves besides dispatching: real provider accounts from the run file (their
 * secrets read from environment variables the file names), and one HTTP server with the providers'
 * status callbacks, a small lead API behind a bearer token, metrics and health.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { z } from "zod";
import type { Dispatcher } from "../dispatcher.js";
import type { Readiness } from "../infra/backend.js";
import { ValidationError } from "../infra/config.js";
import { CLOSE_CONNECTION, readBodyWithin } from "../infra/http-body.js";
import { METRICS_CONTENT_TYPE, prometheusText } from "../infra/metrics.js";
import {
  type CallbackProvider,
  createCallbackHandler,
  type ReplayStore,
} from "../infra/providers/callbacks.js";
import { ExotelProvider } from "../infra/providers/exotel.js";
import { httpUrl } from "../infra/providers/http.js";
import { PacedProvider, type PacingStore } from "../infra/providers/paced.js";
import { PlivoProvider } from "../infra/providers/plivo.js";
import { TwilioProvider } from "../infra/providers/twilio.js";
import type { Clock, LeadRecord, PauseScope, Provider } from "../machines/ports.js";

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name");

/** Fields every provider account has; the rest of its entry goes to the adapter as its options. */
const accountBase = {
  /** The name numbers refer to (`numbers[].provider`) and the callback path `/callbacks/<name>`. */
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, "must be lower-case letters, digits, - or _")
    .optional(),
  /** The account's calls-per-second limit, shared by every process (design §7.19). */
  callsPerSecond: z.number().int().min(1).max(10_000).optional(),
  /** Longest wait of a dial for a pacing token before the lead defers. */
  pacingWaitMs: z.number().int().min(0).max(10_000).default(1000),
};

export const providerAccountSchema = z.discriminatedUnion("type", [
  z
    .object({
      type: z.literal("twilio"),
      ...accountBase,
      authTokenEnv: envName.default("TWILIO_AUTH_TOKEN"),
      /** A Webhooks SharedKey secret (HMAC-SHA256 callbacks), when one signs this account's webhooks. */
      sharedKeySecretEnv: envName.optional(),
    })
    .catchall(z.unknown()),
  z
    .object({ type: z.literal("plivo"), ...accountBase, authTokenEnv: envName.default("PLIVO_AUTH_TOKEN") })
    .catchall(z.unknown()),
  z
    .object({
      type: z.literal("exotel"),
      ...accountBase,
      apiKeyEnv: envName.default("EXOTEL_API_KEY"),
      apiTokenEnv: envName.default("EXOTEL_API_TOKEN"),
      /** Exotel signs no callback: its callback URLs carry an HMAC keyed with this secret. */
      callbackSecretEnv: envName.default("EXOTEL_CALLBACK_SECRET"),
    })
    .catchall(z.unknown()),
]);

export type ProviderAccount = z.output<typeof providerAccountSchema>;

export const httpSchema = z
  .object({
    port: z.number().int().min(0).max(65_535),
    host: z.string().min(1).default("0.0.0.0"),
    /**
     * How providers reach this server (scheme, host, any path prefix a proxy strips): callback URLs
     * are built on it and their signatures cover it. Required with provider accounts.
     */
    publicBaseUrl: httpUrl.optional(),
    /** Bodies over this are refused (413) before they are read whole. */
    maxBodyBytes: z
      .number()
      .int()
      .min(1)
      .default(1024 * 1024),
    /** A body not complete after this is answered 408 and cut off. */
    bodyTimeoutMs: z.number().int().min(1).default(10_000),
    api: z
      .object({
        /** The lead API (/leads, /pause, /resume). */
        enabled: z.boolean().default(true),
        /** The environment variable holding its bearer token. */
        tokenEnv: envName.default("DIALGATE_API_TOKEN"),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type HttpSettings = z.output<typeof httpSchema>;

/** Shortest API token accepted: a guessable token would open the lead API. */
const MIN_TOKEN_LENGTH = 32;

export interface ProviderSetup {
  providers: Provider[];
  /** Callback handler options by provider name, without the dispatcher (added once it exists). */
  callbacks: Map<string, { provider: CallbackProvider; authToken: string; sharedKeySecret?: string }>;
}

/**
 * The adapters of the run file's provider accounts. Every problem is listed (a missing environment
 * variable, a bad adapter option), each with its field path; secrets are never quoted.
 */
export function buildProviders(
  accounts: ProviderAccount[],
  http: HttpSettings | undefined,
  env: NodeJS.ProcessEnv,
  deps: { clock: Clock; pacing: PacingStore; logger: Logger },
): ProviderSetup {
  const problems: string[] = [];
  const providers: Provider[] = [];
  const callbacks: ProviderSetup["callbacks"] = new Map();
  const names = new Set<string>();
  if (accounts.length > 0 && !http?.publicBaseUrl) {
    problems.push("http.publicBaseUrl must be set: providers post their status callbacks to it");
  }
  const base = (http?.publicBaseUrl ?? "http://localhost").replace(/\/+$/, "");
  accounts.forEach((account, i) => {
    const at = `providers[${i}]`;
    const secret = (field: string, variable: string | undefined): string => {
      if (variable === undefined) return "";
      const value = env[variable];
      if (!value) problems.push(`${at}.${field}: environment variable ${variable} is not set`);
      return value ?? "";
    };
    const name = account.name ?? account.type;
    if (names.has(name)) problems.push(`${at}.name: ${JSON.stringify(name)} is used twice`);
    names.add(name);
    const callbackUrl = `${base}/callbacks/${name}`;
    const { type, name: _n, callsPerSecond, pacingWaitMs, ...rest } = account;
    try {
      let provider: Provider;
      if (type === "twilio") {
        const { authTokenEnv, sharedKeySecretEnv, ...options } = rest as typeof rest & {
          authTokenEnv: string;
          sharedKeySecretEnv?: string;
        };
        const authToken = secret("authTokenEnv", authTokenEnv);
        const sharedKeySecret = secret("sharedKeySecretEnv", sharedKeySecretEnv);
        provider = new TwilioProvider(
          { statusCallbackUrl: callbackUrl, clock: deps.clock, ...options, authToken } as never,
          name,
        );
        callbacks.set(name, {
          provider: "twilio",
          authToken,
          ...(sharedKeySecret ? { sharedKeySecret } : {}),
        });
      } else if (type === "plivo") {
        const { authTokenEnv, ...options } = rest as typeof rest & { authTokenEnv: string };
        const authToken = secret("authTokenEnv", authTokenEnv);
        provider = new PlivoProvider(
          { hangupUrl: callbackUrl, clock: deps.clock, ...options, authToken } as never,
          name,
        );
        callbacks.set(name, { provider: "plivo", authToken });
      } else {
        const { apiKeyEnv, apiTokenEnv, callbackSecretEnv, ...options } = rest as typeof rest & {
          apiKeyEnv: string;
          apiTokenEnv: string;
          callbackSecretEnv: string;
        };
        const apiKey = secret("apiKeyEnv", apiKeyEnv);
        const apiToken = secret("apiTokenEnv", apiTokenEnv);
        const callbackSecret = secret("callbackSecretEnv", callbackSecretEnv);
        provider = new ExotelProvider(
          {
            statusCallbackUrl: callbackUrl,
            clock: deps.clock,
            ...options,
            apiKey,
            apiToken,
            callbackSecret,
          } as never,
          name,
        );
        callbacks.set(name, { provider: "exotel", authToken: callbackSecret });
      }
      if (callsPerSecond !== undefined) {
        provider = new PacedProvider(provider, {
          account: name,
          callsPerSecond,
          maxWaitMs: pacingWaitMs,
          store: deps.pacing,
          clock: deps.clock,
          onStoreError: (error) =>
            deps.logger.warn({ err: error, provider: name }, "pacing store failed: dialling unpaced"),
        });
      }
      providers.push(provider);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      // "TwilioOptions.accountSid must be …": re-rooted at the account's place in the file. A secret
      // that was missing is reported above, not again as an empty option.
      if (
        problems.some((p) => p.startsWith(`${at}.`)) &&
        /\.(authToken|apiKey|apiToken|callbackSecret) /.test(error.message)
      )
        return;
      problems.push(`${at}${error.message.replace(/^\w+Options/, "")}`);
    }
  });
  if (problems.length > 0) throw new ServiceConfigError(problems);
  return { providers, callbacks };
}

/** Every problem of the service part of a run file, one per line. */
export class ServiceConfigError extends Error {
  override readonly name = "ServiceConfigError";
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

/** The lead API's bearer token, or a refusal to start (the API would be open to anyone). */
export function apiToken(http: HttpSettings, env: NodeJS.ProcessEnv): string | null {
  if (!http.api.enabled) return null;
  const token = env[http.api.tokenEnv];
  if (!token) {
    throw new ServiceConfigError([
      `http.api: environment variable ${http.api.tokenEnv} is not set (the lead API needs a bearer token; set http.api.enabled false to serve without it)`,
    ]);
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new ServiceConfigError([
      `http.api: ${http.api.tokenEnv} must be at least ${MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 32)`,
    ]);
  }
  return token;
}

export interface ServiceDeps {
  dispatcher: Dispatcher;
  http: HttpSettings;
  /** Null when the lead API is off. */
  token: string | null;
  callbacks: ProviderSetup["callbacks"];
  replayStore: ReplayStore;
  readiness: () => Promise<Readiness>;
  clock: Clock;
}

const pauseBody = z.union([
  z.object({ global: z.literal(true) }).strict(),
  z.object({ resellerId: z.string().min(1).max(200) }).strict(),
  z.object({ templateId: z.string().min(1).max(200) }).strict(),
]);

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The one request listener of `dialgate run --config` with an `http` section. */
export function createServiceHandler(deps: ServiceDeps): RequestListener {
  const { dispatcher, http } = deps;
  const callbackHandlers = new Map(
    [...deps.callbacks].map(([name, options]) => [
      name,
      createCallbackHandler({
        ...options,
        publicBaseUrl: http.publicBaseUrl ?? "http://localhost",
        dialgate: dispatcher,
        clock: deps.clock,
        replayStore: deps.replayStore,
        maxBodyBytes: Math.min(http.maxBodyBytes, 64 * 1024),
        bodyTimeoutMs: http.bodyTimeoutMs,
      }),
    ]),
  );
  const tokenHash = deps.token === null ? null : sha256(deps.token);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<Answer | null> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname;
    const method = req.method ?? "GET";
    const callback = /^\/callbacks\/([^/]+)$/.exec(path);
    if (callback) {
      const handler = callbackHandlers.get(decodeURIComponent(callback[1] as string));
      if (!handler) return { status: 404, body: { error: "no such provider" } };
      await handler(req, res);
      return null;
    }
    if (path === "/healthz") return only(method, "GET", () => ({ status: 200, body: { ok: true } }));
    if (path === "/readyz") {
      if (method !== "GET") return notAllowed("GET");
      const readiness = await deps.readiness();
      return { status: readiness.ready ? 200 : 503, body: readiness };
    }
    if (path === "/metrics") {
      if (method !== "GET") return notAllowed("GET");
      return {
        status: 200,
        body: prometheusText(dispatcher),
        headers: { "content-type": METRICS_CONTENT_TYPE },
      };
    }
    const lead = /^\/leads\/([^/]+)$/.exec(path);
    if (path !== "/leads" && !lead && path !== "/pause" && path !== "/resume") {
      return { status: 404, body: { error: "not found" } };
    }
    if (tokenHash === null) return { status: 404, body: { error: "the lead API is disabled" } };
    if (!authorized(req, tokenHash)) {
      return {
        status: 401,
        body: { error: "a valid bearer token is required" },
        headers: { "www-authenticate": 'Bearer realm="dialgate"' },
      };
    }
    if (path === "/leads") {
      if (method !== "POST") return notAllowed("POST");
      const body = await jsonBody(req);
      if ("status" in body) return body;
      const stored = await dispatcher.submit(body.json as never);
      const views = stored.map(leadView);
      return { status: 200, body: Array.isArray(body.json) ? { leads: views } : { lead: views[0] } };
    }
    if (lead) {
      const id = decodeURIComponent(lead[1] as string);
      if (method === "GET") {
        const found = await dispatcher.store.get(id);
        return found ? { status: 200, body: { lead: leadView(found) } } : notFound(id);
      }
      if (method === "DELETE") {
        const cancelled = await dispatcher.cancel(id);
        return cancelled ? { status: 200, body: { lead: leadView(cancelled) } } : notFound(id);
      }
      return notAllowed("GET, DELETE");
    }
    if (method !== "POST") return notAllowed("POST");
    const body = await jsonBody(req, { global: true });
    if ("status" in body) return body;
    const scope = pauseBody.safeParse(body.json);
    if (!scope.success) {
      return {
        status: 400,
        body: { error: "must be { global: true }, { resellerId } or { templateId }", path: "body" },
      };
    }
    const changed =
      path === "/pause"
        ? await dispatcher.pause(scope.data as PauseScope)
        : await dispatcher.resume(scope.data as PauseScope);
    return { status: 200, body: path === "/pause" ? { paused: changed } : { resumed: changed } };
  }

  async function jsonBody(req: IncomingMessage, empty?: unknown): Promise<{ json: unknown } | Answer> {
    const read = await readBodyWithin(req, {
      maxBytes: http.maxBodyBytes,
      timeoutMs: http.bodyTimeoutMs,
      clock: deps.clock,
    });
    if (read.kind === "tooLarge") {
      return {
        status: 413,
        body: { error: `body over ${http.maxBodyBytes} bytes` },
        headers: CLOSE_CONNECTION,
      };
    }
    if (read.kind === "timeout")
      return { status: 408, body: { error: "body too slow" }, headers: CLOSE_CONNECTION };
    if (read.text.trim() === "" && empty !== undefined) return { json: empty };
    if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
      return { status: 415, body: { error: "content-type must be application/json" } };
    }
    try {
      return { json: JSON.parse(read.text) };
    } catch {
      return { status: 400, body: { error: "body is not JSON", path: "body" } };
    }
  }

  return (req, res) => {
    route(req, res).then(
      (answer) => answer && send(res, answer),
      (error: unknown) => {
        if (error instanceof ValidationError) {
          send(res, { status: 400, body: { error: error.message, path: error.path } });
        } else {
          dispatcher.logger.warn({ err: error, path: req.url?.split("?")[0] }, "HTTP request failed");
          send(res, { status: 500, body: { error: "internal error" } });
        }
      },
    );
  };
}

/** A lead as the API shows it: its state, never its phone or payload. */
function leadView(lead: LeadRecord) {
  return {
    id: lead.id,
    templateId: lead.templateId,
    status: lead.status,
    outcome: lead.outcome,
    attempt: lead.attempt,
    dueAt: lead.dueAt,
    nextAttemptAt: lead.nextAttemptAt,
    cancelRequested: lead.cancelRequested,
  };
}

function authorized(req: IncomingMessage, tokenHash: Buffer): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  // Hashes have one length, so the compare takes the same time whatever was sent.
  return !!match && timingSafeEqual(sha256(match[1] as string), tokenHash);
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function only(method: string, allowed: string, answer: () => Answer): Answer {
  return method === allowed ? answer() : notAllowed(allowed);
}

function notAllowed(allow: string): Answer {
  return { status: 405, body: { error: `${allow} only` }, headers: { allow } };
}

function notFound(id: string): Answer {
  return { status: 404, body: { error: `no lead ${JSON.stringify(id.slice(0, 200))}` } };
}

function send(res: ServerResponse, answer: Answer): void {
  if (res.headersSent) return;
  const text = typeof answer.body === "string" ? answer.body : `${JSON.stringify(answer.body)}\n`;
  res.writeHead(answer.status, {
    "content-type": "application/json; charset=utf-8",
    ...answer.headers,
  });
  res.end(text);
}
