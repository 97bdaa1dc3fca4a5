#!/usr/bin/env bash
# The package as a new user gets it: `npm pack`, the tarball installed into a fresh temporary project,
# then (a) a plain-JavaScript ESM host dispatches a small campaign on the embedded default (and a
# CommonJS host can require it), (b) a TypeScript host type-checks under strict,
# noUncheckedIndexedAccess, exactOptionalPropertyTypes and skipLibCheck false, (c) the installed bin
# answers --version and runs `dialgate simulate`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
here=$repo/scripts/pack-test
version=$(node -p 'require("./package.json").version')
typescript=$(node -p 'require("./package.json").devDependencies.typescript')

work=$(mktemp -d "${TMPDIR:-/tmp}/dialgate-pack-XXXXXX")
trap 'rm -rf "$work"' EXIT

# prepack builds dist/ first.
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "pack-test: packed $tarball ($(du -k "$work/$tarball" | cut -f1) KB)"

app=$work/app
mkdir "$app"
cp "$here"/{campaign.mjs,require.cjs,consumer.ts,tsconfig.json,scenario.json} "$app/"
cd "$app"
echo '{ "name": "dialgate-pack-test", "private": true, "type": "module" }' >package.json
# Only dialgate and the compiler: whatever its .d.ts need must come with dialgate itself.
npm install --no-audit --no-fund --loglevel=error "$work/$tarball" "typescript@$typescript"
echo "pack-test: installed, node_modules $(du -sh node_modules | cut -f1)"

# (a) plain node, no loader. Importing dialgate reads the Lua scripts (lua/) from beside dist/.
node campaign.mjs
node require.cjs
# The migrations are found from dist/ as `dialgate migrate` looks for them.
node --input-type=module -e '
  import { readdirSync } from "node:fs";
  import { MIGRATIONS_DIR } from "./node_modules/dialgate/dist/infra/postgres/migrate.js";
  const sql = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith(".sql"));
  if (sql.length === 0) throw new Error(`no migrations in ${MIGRATIONS_DIR}`);
  console.log(`pack-test: ${sql.length} migrations found from dist/`);
'

# The callee's zone comes from libphonenumber's tables, read from the installed dependency.
node --input-type=module -e '
  import { placeOf } from "./node_modules/dialgate/dist/infra/geo.js";
  const place = placeOf("+14155550123");
  if (place.zones.join() !== "America/Los_Angeles" || place.region !== "CA") throw new Error(JSON.stringify(place));
  console.log(`pack-test: +1 415 is in ${place.region}, ${place.zones}`);
'

# (b) strict consumer, the package's .d.ts and its dependencies' checked too.
npx --no-install tsc -p tsconfig.json
echo "pack-test: consumer.ts type-checks (strict, noUncheckedIndexedAccess, exactOptionalPropertyTypes, skipLibCheck false)"

# (c) the installed bin runs compiled JavaScript.
reported=$(npx --no-install dialgate --version)
if [[ $reported != "$version" ]]; then
  echo "pack-test: dialgate --version printed '$reported', expected $version" >&2
  exit 1
fi
echo "pack-test: dialgate --version → $reported"
npx --no-install dialgate simulate scenario.json --json >report.json
node -e '
  const { totals, invariants } = require("./report.json");
  console.log(`pack-test: dialgate simulate → ${JSON.stringify(totals)} ${JSON.stringify(invariants)}`);
  if (invariants.duplicateDials !== 0 || invariants.lostLeads !== 0) process.exit(1);
'
if [[ -e node_modules/dialgate/src ]]; then
  echo "pack-test: the tarball ships src/ (only dist/ should run)" >&2
  exit 1
fi
echo "pack-test: ok"
