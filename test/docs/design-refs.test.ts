/**
 * docs/design.md is what the tree cites: every "design §N" (and every bare "§N", "§N.M", "§2 step N")
 * in code, Lua headers, migrations, tests, docs and bench names a section that exists, and no citation
 * of the old, unpublished spec is left. Also the house's layering: adapters (src/infra/) implement the
 * ports beside the machine and never reach up into the actors or the Dispatcher class.
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

/** Where citations may appear. */
const CITING = ["src", "lua", "migrations", "test", "docs", "bench"];
const TEXT = /\.(ts|js|lua|sql|md|html|json)$/;
/** Written with an escape so that this file's own examples are not citations. */
const S = "\u00a7";

/** Section numbers of the headings of docs/design.md ("## 7. …", "### 7.12 …"), and §2's step numbers. */
function designSections(text: string): { sections: Set<string>; steps: Set<string> } {
  const sections = new Set([...text.matchAll(/^#{2,4} (\d+(?:\.\d+)?)[.\s]/gm)].map((m) => m[1] as string));
  const two = text.split(/^## /m).find((part) => part.startsWith("2. ")) ?? "";
  const steps = new Set([...two.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1] as string));
  return { sections, steps };
}

/** Every section a text cites, ranges ("7.12–7.14") expanded; and every "§2 step N" step. */
function citations(text: string): { sections: string[]; steps: string[] } {
  const sections: string[] = [];
  const steps: string[] = [];
  const ref = new RegExp(`${S}(\\d+)(?:\\.(\\d+))?(?:[–-](\\d+)\\.(\\d+))?`, "g");
  for (const m of text.matchAll(ref)) {
    const [, major, minor, toMajor, toMinor] = m;
    if (minor && toMinor && toMajor === major) {
      for (let i = Number(minor); i <= Number(toMinor); i++) sections.push(`${major}.${i}`);
    } else {
      sections.push(minor ? `${major}.${minor}` : (major as string));
      if (toMajor && toMinor) sections.push(`${toMajor}.${toMinor}`);
    }
  }
  const step = new RegExp(`${S}2 steps? (\\d+)(?: and (\\d+))?`, "g");
  for (const m of text.matchAll(step)) steps.push(...m.slice(1).filter((n): n is string => n !== undefined));
  return { sections, steps };
}

/**
 * Citations of the spec that never was in the repository ("spec", "Spec" or "dispatcher.md", then §),
 * also when a comment wraps between the two (the next line's "*", "//", "--" or "#").
 */
const OLD_CITATION = new RegExp(`\\b(?:[Ss]pec|dispatcher\\.md)\\s+(?:(?:\\*|//|--|#)\\s+)?${S}`, "g");

/** The line (from 1) where each old citation starts. */
function oldCitations(text: string): number[] {
  return [...text.matchAll(OLD_CITATION)].map((m) => text.slice(0, m.index).split("\n").length);
}

const design = designSections(readFileSync(path.join(ROOT, "docs", "design.md"), "utf8"));
const citingFiles = [
  "README.md",
  ...CITING.flatMap((dir) => filesUnder(dir, (f) => TEXT.test(f) && !f.includes("node_modules"))),
];

describe("design references", () => {
  it("the check reads headings, ranges and steps, and sees an unknown section", () => {
    const doc = [
      "## 2. Chart",
      "| 1 | a |",
      "| 7 | b |",
      "## 7. Fine print",
      "### 7.12 One",
      "### 7.13 Two",
    ].join("\n");
    const parsed = designSections(doc);
    expect([...parsed.sections]).toEqual(["2", "7", "7.12", "7.13"]);
    expect([...parsed.steps]).toEqual(["1", "7"]);
    const cited = citations(`design ${S}7.12–7.14, ${S}2 steps 1 and 7, ${S}9`);
    expect(cited).toEqual({ sections: ["7.12", "7.13", "7.14", "2", "9"], steps: ["1", "7"] });
    expect(cited.sections.filter((n) => !parsed.sections.has(n))).toEqual(["7.14", "9"]);
    expect(oldCitations(`(spec ${S}7.13)`)).toEqual([1]);
    expect(oldCitations(`(design ${S}7.13)`)).toEqual([]);
    expect(oldCitations(`first\n * the violations of dispatcher.md\n * ${S}1 are counted`)).toEqual([2]);
  });

  it("every section and step cited in the tree exists in docs/design.md", () => {
    expect(citingFiles.length).toBeGreaterThan(100);
    const missing: string[] = [];
    let count = 0;
    for (const file of citingFiles) {
      const { sections, steps } = citations(readFileSync(path.join(ROOT, file), "utf8"));
      count += sections.length;
      for (const n of sections) if (!design.sections.has(n)) missing.push(`${file}: ${S}${n}`);
      for (const n of steps) if (!design.steps.has(n)) missing.push(`${file}: ${S}2 step ${n}`);
    }
    expect(count).toBeGreaterThan(100);
    expect(missing).toEqual([]);
  });

  it("no citation of the old spec is left", () => {
    const old = citingFiles.flatMap((file) =>
      oldCitations(readFileSync(path.join(ROOT, file), "utf8")).map((line) => `${file}:${line}`),
    );
    expect(old).toEqual([]);
  });
});

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
