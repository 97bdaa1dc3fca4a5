/**
 * A provider REST API on 127.0.0.1 (ephemeral port) that records every request and answers as the
 * test says: a status and body, a socket cut mid-reply, or nothing at all.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
  /** The body read as a form (empty when it is JSON). */
  form: URLSearchParams;
  /** The body read as JSON (undefined when it is a form). */
  json: unknown;
}

export type Play = (res: ServerResponse) => void;

export class FakeProvider {
  readonly requests: RecordedRequest[] = [];
  #play: Play = json(500, {});

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<FakeProvider> {
    let fake: FakeProvider | undefined;
    const server = createServer((req, res) => void fake?.onRequest(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeProvider(server, `http://127.0.0.1:${port}`);
    return fake;
  }

  /** How the next requests are answered. */
  plays(play: Play): this {
    this.#play = play;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const contentType = req.headers["content-type"];
    const isJson = contentType?.startsWith("application/json") ?? false;
    this.requests.push({
      method: req.method ?? "",
      path: req.url ?? "",
      authorization: req.headers.authorization,
      contentType,
      body,
      form: isJson ? new URLSearchParams() : new URLSearchParams(body),
      json: isJson ? JSON.parse(body) : undefined,
    });
    this.#play(res);
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Play {
  return (res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
}

export function raw(status: number, text: string): Play {
  return (res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(text);
  };
}

/** The status line and half a header, then the socket closes. */
export const cutInHeaders: Play = (res) => {
  res.socket?.end("HTTP/1.1 201 Created\r\nContent-Ty");
};

/** A complete 201 head announcing 200 bytes, 10 of them, then the socket is destroyed. */
export const cutInBody: Play = (res) => {
  res.writeHead(201, { "content-type": "application/json", "content-length": "200" });
  res.write('{"sid":"CA');
  setTimeout(() => res.socket?.destroy(), 10);
};

/** Reads the request and never answers. */
export const neverAnswers: Play = () => {};

/** An address where nothing listens: a port that was just bound and released. */
export async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
