/**
 * `fusegen dashboard`: one self-contained HTML page over every bench and compare report in
 * a directory (trends over time, all runs with links). Written atomically; prints its path.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { buildDashboard } from '../report/dashboard.js';
import { text, type OptionTable } from './options.js';

export interface DashboardCliOptions {
  report_dir: string;
  out: string | undefined;
}

export const dashboardOptions: OptionTable<DashboardCliOptions> = {
  report_dir: { flag: 'report_dir', arg: 'dir', help: 'directory holding the *-bench.json and *-compare.json reports', default: 'reports', parse: text },
  out: { flag: 'out', arg: 'file', help: 'where the page goes (default: <report_dir>/dashboard.html)', parse: text },
};

function writeTextAtomic(path: string, body: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = openSync(tmp, 'wx');
    try {
      const bytes = Buffer.from(body, 'utf8');
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function runDashboardCommand(o: DashboardCliOptions, io: { out: (l: string) => void }): number {
  if (!existsSync(o.report_dir) || !statSync(o.report_dir).isDirectory()) throw new InputError(o.report_dir, 'no such report directory');
  const out = o.out ?? join(o.report_dir, 'dashboard.html');
  const html = buildDashboard(o.report_dir, { outDir: dirname(resolve(out)) });
  writeTextAtomic(out, html);
  io.out(out);
  return 0;
}
