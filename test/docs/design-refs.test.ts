/**
 * The house's layering: adapters (src/infra/) implement the ports beside the machine and never reach
 * up into the actors or the Dispatcher class.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");

function filesUnder(dir: string, keep: (file: string) => boolean): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)))
    .filter(keep)
    .sort();
}

/** Relative imports of a TypeScript file (static, type-only, re-exports, dynamic), as repo paths. */
function importsOf(file: string, text: string): string[] {
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.map((ref) => ref.fileName)
    .filter((spec) => spec.startsWith("."))
    .map((spec) => path.join(path.dirname(file), spec).replace(/\.js$/, ".ts"));
}

/** Imports from an adapter that point up: into src/actors/ or to src/dispatcher.ts. */
function upwardImports(file: string, text: string): string[] {
  return importsOf(file, text).filter(
    (target) =>
      target.startsWith(`src${path.sep}actors${path.sep}`) || target === path.join("src", "dispatcher.ts"),
  );
}

describe("dependencies point down", () => {
  it("the check sees a type-only import into src/actors/ and one of the Dispatcher class", () => {
    const file = path.join("src", "infra", "redis", "gate-store.ts");
    const text = [
      'import type { GateState } from "../../actors/gate-rebuild.js";',
      'import type { Dispatcher } from "../../dispatcher.js";',
      'import type { Clock } from "../../machines/ports.js";',
    ].join("\n");
    expect(upwardImports(file, text)).toEqual([
      path.join("src", "actors", "gate-rebuild.ts"),
      path.join("src", "dispatcher.ts"),
    ]);
  });

  it("no file in src/infra/ imports from src/actors/ or src/dispatcher.ts", () => {
    const files = filesUnder(path.join("src", "infra"), (f) => f.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(10);
    const offenders = files.flatMap((file) =>
      upwardImports(file, readFileSync(path.join(ROOT, file), "utf8")).map((target) => `${file} → ${target}`),
    );
    expect(offenders).toEqual([]);
  });
});
