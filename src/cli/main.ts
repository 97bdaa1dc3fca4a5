import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { demo } from "./demo.js";
import { EXIT_RUNTIME, reportFailure } from "./errors.js";

// The same relative path from src/cli/ in a checkout and from dist/cli/ in the package.
const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

// Settings made here are inherited by every command below: commander throws instead of exiting
// (the catch at the end picks the exit code) and its messages start `dialgate: ` like ours.
const program = new Command()
  .name("dialgate")
  .description("Outbound call dispatcher: per-phone rate limits, per-number channels, no double dials.")
  .version(version, "-V, --version", "print the version")
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(`dialgate: ${text.replace(/^error: /, "")}`) })
  .showHelpAfterError();

program
  .command("demo")
  .description("run a small campaign on the embedded dispatcher (nothing to install)")
  .option("--seed <n>", "random seed", toInt, 21)
  .addOption(slackWebhookOption())
  .action(async (opts: { seed: number; slackWebhook?: string }) =>
    finish(await demo({ seed: opts.seed, slackWebhook: opts.slackWebhook })),
  );

program
  .command("simulate")
  .description("run a scenario on a virtual clock against a simulated provider and report")
  .argument("<scenario>", "scenario JSON file")
  .option("--backend <backend>", "memory | redis", "memory")
  .option("--json", "print only the report as JSON on stdout")
  .option("--out <file>", "also write the report to this file")
  .action(async (file: string, opts: { backend: string; json?: boolean; out?: string }) => {
    const { simulateCommand } = await import("./simulate/index.js");
    finish(await simulateCommand(file, opts));
  });

function slackWebhookOption(): Option {
  return new Option("--slack-webhook <url>", "also send alerts to this Slack incoming webhook").env(
    "DIALGATE_SLACK_WEBHOOK_URL",
  );
}

const schemaOption = () =>
  new Option("--schema <name>", "Postgres schema of the lead store")
    .env("DIALGATE_SCHEMA")
    .default("dialgate");

program
  .command("migrate")
  .description("apply pending database migrations to DATABASE_URL (idempotent)")
  .addOption(schemaOption())
  .action(async (opts: { schema: string }) => {
    const { migrateCommand } = await import("./migrate.js");
    finish(await migrateCommand(opts));
  });

program
  .command("run")
  .description(
    "run the dispatcher on REDIS_URL + DATABASE_URL until SIGTERM/SIGINT (needs DIALGATE_HMAC_SECRET)",
  )
  .addOption(
    new Option("--config <file>", "JSON: { config, numbers, templates, providers, http, provider }").env(
      "DIALGATE_CONFIG",
    ),
  )
  .addOption(schemaOption())
  .addOption(
    new Option("--prefix <prefix>", "prefix of every Redis key")
      .env("DIALGATE_REDIS_PREFIX")
      .default("dialgate:"),
  )
  .addOption(
    new Option("--sweep-every-ms <ms>", "sweep for calls and unknown dials of dead processes this often")
      .env("DIALGATE_SWEEP_EVERY_MS")
      .default(5000)
      .argParser(toPositiveInt),
  )
  .option("--migrate", "apply pending migrations before starting")
  .addOption(slackWebhookOption())
  .addOption(
    new Option("--metrics-port <n>", "serve Prometheus metrics on GET /metrics at this port")
      .env("DIALGATE_METRICS_PORT")
      .argParser(toPort),
  )
  .action(
    async (opts: {
      config?: string;
      schema: string;
      prefix: string;
      sweepEveryMs: number;
      migrate?: boolean;
      slackWebhook?: string;
      metricsPort?: number;
    }) => {
      const { runCommand } = await import("./run.js");
      finish(await runCommand(opts));
    },
  );

program
  .command("viz")
  .description(
    "write <chart>.md and <chart>.html from the lead and supervisor statecharts " +
      "(default: the current directory; docs/ in a dialgate checkout)",
  )
  .option("--out-dir <dir>", "write (or --check) the diagrams in this directory")
  .option("--check", "exit 1 when the diagrams there are stale")
  .action(async (opts: { check?: boolean; outDir?: string }) => {
    const { viz, staleMessage } = await import("./viz.js");
    const { stale, written } = await viz({ check: opts.check, outDir: opts.outDir });
    if (opts.check && stale.length > 0) {
      console.error(`dialgate: ${staleMessage(stale)}`);
      finish(EXIT_RUNTIME);
      return;
    }
    for (const file of written) console.error(`wrote ${file}`);
    finish(0);
  });

function toInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("must be an integer");
  return n;
}

function toPositiveInt(value: string): number {
  const n = toInt(value);
  if (n < 1) throw new InvalidArgumentError("must be ≥ 1");
  return n;
}

function toPort(value: string): number {
  const n = toInt(value);
  if (n < 1 || n > 65535) throw new InvalidArgumentError("must be a TCP port, 1–65535");
  return n;
}

function finish(code: number): void {
  process.exitCode = code;
}

program.parseAsync().catch((error: unknown) => {
  process.exitCode = reportFailure(error);
});
