/**
 * The README's "Layout" has one line per folder of the tree: every folder that holds a file has its
 * line, and every line names a folder that exists.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
/** Not the project's: installed, generated or local. */
const SKIP = new Set(["node_modules", ".git", "coverage", ".tmp", "dist"]);

/** Folders (relative, with a trailing slash) that directly hold at least one file. */
function foldersWithFiles(dir = ""): string[] {
  const entries = readdirSync(path.join(ROOT, dir), { withFileTypes: true });
  const here = dir !== "" && entries.some((entry) => entry.isFile()) ? [`${dir}/`] : [];
  const below = entries
    .filter((entry) => entry.isDirectory() && !SKIP.has(entry.name))
    .flatMap((entry) => foldersWithFiles(dir === "" ? entry.name : `${dir}/${entry.name}`));
  return [...here, ...below];
}

/** The folder each line of the Layout block names ("    src/actors/   what it holds"). */
function layoutFolders(readme: string): string[] {
  const section = readme.split(/^## /m).find((part) => part.startsWith("Layout\n")) ?? "";
  return [...section.matchAll(/^ {4}(\S+\/) /gm)].map((m) => m[1] as string);
}

describe("README layout", () => {
  const listed = layoutFolders(readFileSync(path.join(ROOT, "README.md"), "utf8"));

  it("reads the folder of each line", () => {
    expect(
      layoutFolders("## Layout\n\n    src/          the code\n    lua/x/    scripts\n## Next\n"),
    ).toEqual(["src/", "lua/x/"]);
  });

  it("has a line for every folder with a file, and no line for a folder that is gone", () => {
    const tree = foldersWithFiles();
    expect(tree.filter((folder) => !listed.includes(folder))).toEqual([]);
    expect(listed.filter((folder) => !tree.includes(folder))).toEqual([]);
  });

  it("has one line per folder", () => {
    expect(listed.length).toBe(new Set(listed).size);
  });
});
