import type { IncomingMessage } from "node:http";
import type { Clock } from "../machines/ports.js";

export type BodyRead =
  | { kind: "ok"; text: string }
  /** Over the limit: announced by Content-Length (nothing was read), or reached while reading. */
  | { kind: "tooLarge" }
  /** The whole body did not arrive within the time allowed (a slow or stalled sender). */
  | { kind: "timeout" };

export interface BodyLimits {
  maxBytes: number;
  timeoutMs: number;
  clock: Clock;
}

/**
 * Reads a request body within a size and a time bound. A body announced larger than `maxBytes` is
 * refused before a byte of it is read; one that grows past it, or that does not finish within
 * `timeoutMs`, stops being read. The caller answers and then closes the connection (`refuseBody`), so a
 * refused body is never read whole.
 */
export function readBodyWithin(req: IncomingMessage, limits: BodyLimits): Promise<BodyRead> {
  const announced = Number(req.headers["content-length"]);
  if (Number.isFinite(announced) && announced > limits.maxBytes) return Promise.resolve({ kind: "tooLarge" });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (read: BodyRead) => {
      settled = true;
      timer.cancel();
      req.off("data", onData);
      req.off("end", onEnd);
      // onError stays: the client cut off after a refusal must not become an unhandled 'error'.
      if (read.kind !== "ok") req.pause();
      resolve(read);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) done({ kind: "tooLarge" });
      else chunks.push(chunk);
    };
    const onEnd = () => done({ kind: "ok", text: Buffer.concat(chunks).toString("utf8") });
    const onError = (error: Error) => {
      if (settled) return;
      settled = true;
      timer.cancel();
      reject(error);
    };
    const timer = limits.clock.setTimer(limits.clock.now() + limits.timeoutMs, () =>
      done({ kind: "timeout" }),
    );
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

/** Headers for the answer to a refused body: the connection closes after it, the rest is never read. */
export const CLOSE_CONNECTION = { connection: "close" } as const;
