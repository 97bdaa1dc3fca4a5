/**
 * Real Redis servers for tests: never mocks (design §4).
 * `startRedis()` uses REDIS_URL when set (a shared server: callers isolate by key prefix and never
 * flush it), else a throw-away `redis-server` child on a free port. `startRedisCluster()` always starts
 * three throw-away cluster nodes.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);
const READY_TIMEOUT_MS = 10_000;
const POLL_MS = 20;

export interface RedisServer {
  url: string;
  /** False for a shared REDIS_URL server: kill() and restart() refuse to touch it. */
  disposable: boolean;
  /** Stops the server (a no-op for a shared one) and removes its files. */
  stop(): Promise<void>;
  /** SIGKILL: clients see a dead server (outage and chaos tests). */
  kill(): Promise<void>;
  /** Kills if alive, then starts an empty server on the same port (a Redis restart loses every key). */
  restart(): Promise<void>;
}

export interface StartRedisOptions {
  /** Always start a throw-away server, even when REDIS_URL is set (for kill/restart or SCRIPT FLUSH). */
  disposable?: boolean;
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const shared = process.env.REDIS_URL;
  if (shared && !options.disposable) return sharedServer(shared);

  const dir = await mkdtemp(join(tmpdir(), "dialgate-redis-"));
  const port = await freePort(false);
  let node: RedisNode | null = await startNode(port, dir, []);
  const kill = async () => {
    await node?.kill();
    node = null;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    disposable: true,
    kill,
    async restart() {
      await kill();
      node = await startNode(port, dir, []);
    },
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
}

/** Three masters, no replicas, every slot assigned: a real cluster that answers CROSSSLOT like any other. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), "dialgate-cluster-"));
  const nodes: RedisNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort(true);
      const conf = join(dir, `nodes-${port}.conf`);
      nodes.push(await startNode(port, dir, ["--cluster-enabled", "yes", "--cluster-config-file", conf]));
    }
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    await run("redis-cli", ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"]);
    for (const node of nodes) {
      await until(
        async () => (await cli(node.port, "cluster", "info")).includes("cluster_state:ok"),
        `cluster_state:ok on ${node.port}`,
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes: nodes.map((node) => ({ host: "127.0.0.1", port: node.port })), stop };
}

function sharedServer(url: string): RedisServer {
  const refuse = async () => {
    throw new Error("REDIS_URL is a shared server: use startRedis({ disposable: true }) to kill or restart");
  };
  return { url, disposable: false, stop: async () => {}, kill: refuse, restart: refuse };
}

interface RedisNode {
  port: number;
  kill(): Promise<void>;
}

/** Every child still running when the test process exits, so no server outlives its tests. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

async function startNode(port: number, dir: string, extra: string[]): Promise<RedisNode> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  const child = spawn("redis-server", [...args, "--dir", dir, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  // Keep the last lines of its log for the error message; reading also keeps the pipe from filling up.
  let log = "";
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  exited.then(() => children.delete(child));

  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  };
  try {
    await until(async () => {
      if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited:\n${log}`);
      return (await cli(port, "ping").catch(() => "")) === "PONG";
    }, `redis-server on ${port} to answer PING`);
  } catch (error) {
    await kill();
    throw error;
  }
  return { port, kill };
}

async function cli(port: number, ...command: string[]): Promise<string> {
  const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...command], {
    timeout: 2000,
  });
  return stdout.trim();
}

/** Polls `check` until it is true, for at most READY_TIMEOUT_MS. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(POLL_MS);
  }
}

/**
 * A port nobody listens on. A cluster node also needs port + 10000 (its bus), so cluster ports are
 * drawn from 20000–29999 rather than the ephemeral range, whose ports may lack a bus port.
 */
async function freePort(withBus: boolean): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (!withBus) return listenable(0);
    const port = 20000 + Math.floor(Math.random() * 10000);
    if ((await canListen(port)) && (await canListen(port + 10000))) return port;
  }
  throw new Error("no free port pair for a cluster node");
}

function listenable(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : port));
    });
  });
}

function canListen(port: number): Promise<boolean> {
  return listenable(port).then(
    () => true,
    () => false,
  );
}
