/**
 * A local stand-in for Slack's incoming webhook: a real node:http server that records every request
 * and answers the way the test says (ok, an error status, or never).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as delay } from "node:timers/promises";

export interface ReceivedRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  body: string;
  json: unknown;
}

export type WebhookBehaviour = { status: number; body?: string } | "hang";

export interface WebhookServer {
  /** A webhook-like URL on this server; the path plays the secret. */
  url: string;
  received: ReceivedRequest[];
  behave(behaviour: WebhookBehaviour): void;
  close(): Promise<void>;
}

export const SECRET_PATH = "/services/T0000/B0000/s3cr3tW3bh00kT0k3n";

export async function startWebhookServer(
  behaviour: WebhookBehaviour = { status: 200, body: "ok" },
): Promise<WebhookServer> {
  let current = behaviour;
  const received: ReceivedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      received.push({
        method: req.method ?? "",
        path: req.url ?? "",
        contentType: req.headers["content-type"],
        body,
        json,
      });
      if (current === "hang") return; // never answers; close() drops the socket
      res.writeHead(current.status, { "content-type": "text/plain" }).end(current.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${SECRET_PATH}`,
    received,
    behave: (next) => {
      current = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A URL on which nothing listens: connections are refused at once. */
export async function deadWebhookUrl(): Promise<string> {
  const server = await startWebhookServer();
  const url = server.url;
  await server.close();
  return url;
}

/** Polls `check` on the wall clock (real HTTP needs real time) until true or `ms` passed. */
export async function eventually(check: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await delay(10);
  }
  return true;
}
