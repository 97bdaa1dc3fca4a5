#!/usr/bin/env node
// The installed package runs the compiled CLI (dist/) with plain node. A git checkout ships no build:
// there the TypeScript source runs through tsx (a devDependency), so `npx dialgate …` never runs a
// stale dist/ left behind by an earlier `npm run build`.
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import("../dist/cli/main.js");
}
