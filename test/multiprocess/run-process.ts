/**
 * `dialgate run` as real child processes (node bin/dialgate.js), the way an operator starts them.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const BIN = fileURLToPath(new URL("../../bin/dialgate.js", import.meta.url));
const STARTUP_TIMEOUT_MS = 20_000;
/** Stderr kept per process for failure messages. */
const KEEP_LOG_CHARS = 20_000;

const exec = promisify(execFile);

/** Every child still alive when the test process exits is SIGKILLed, even after a crash of the test. */
const alive = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of alive) child.kill("SIGKILL");
});

/** `dialgate <args>` to completion: its exit code and output. */
export async function dialgate(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BIN, ...args], {
      cwd: REPO,
      env: { ...process.env, ...env },
      timeout: STARTUP_TIMEOUT_MS,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw error;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

export class RunProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #log = "";
  #started = false;

  constructor(
    readonly name: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(process.execPath, [BIN, "run", ...args], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    alive.add(this.child);
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.#log = (this.#log + chunk.toString()).slice(-KEEP_LOG_CHARS);
      if (!this.#started && this.#log.includes('"msg":"dialgate run started"')) this.#started = true;
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        alive.delete(this.child);
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get isAlive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines it wrote to stderr (pino JSON). */
  get log(): string {
    return this.#log;
  }

  /** Resolves once it logged "dialgate run started" (LISTEN is on and it is claiming). */
  async started(): Promise<void> {
    await waitFor(
      () => {
        if (!this.isAlive) throw new Error(`${this.name} exited before starting:\n${this.#log}`);
        return this.#started;
      },
      { timeoutMs: STARTUP_TIMEOUT_MS, what: `${this.name} to start` },
    );
  }

  /** Lines it logged at warn or above, for failure messages. */
  problems(): string[] {
    return this.#log.split("\n").filter((line) => /"level":(40|50|60)/.test(line));
  }

  kill(signal: NodeJS.Signals): void {
    if (this.isAlive) this.child.kill(signal);
  }
}

/** Polls `check` every `intervalMs` until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number; what: string | (() => string) },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      const what = typeof options.what === "string" ? options.what : options.what();
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}
