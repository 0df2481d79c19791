#!/usr/bin/env node
/**
 * The `fusegen` command (package.json "bin", so also `npx fusegen`): runs the built CLI,
 * dist/src/cli/main.js, and first builds it (tsc) when dist/ is missing, as on a fresh clone
 * after `npm install`. After changing the sources, `npm run build` (the npm scripts build first).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(built)) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    console.error(`error: ${built}: not built, and TypeScript is not installed to build it: run npm install, then npm run build`);
    process.exit(2);
  }
  console.error('fusegen: building dist/ first (npm run build) ...');
  // tsc's messages go to stderr: stdout stays the command's own.
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0 || !existsSync(built)) {
    console.error(`error: building dist/ failed (tsc exit ${r.status ?? r.signal}); run npm run build to see why`);
    process.exit(1);
  }
}
const { main } = await import(pathToFileURL(built).href);
process.exitCode = await main(process.argv.slice(2));
