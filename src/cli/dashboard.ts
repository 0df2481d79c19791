/**
 * `fusegen dashboard`: one self-contained HTML page over every bench and compare report in
 * a directory (trends over time, all runs with links). Written atomically over an earlier
 * dashboard (never over another file); prints its path.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError, UsageError } from '../errors.js';
import { prepareOutputDir, writeTextAtomic } from '../report/write.js';
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

/** The page's own heading: an existing file without it is not a dashboard, and is never replaced. */
const DASHBOARD_MARK = '<h1>fusegen dashboard</h1>';

export function runDashboardCommand(o: DashboardCliOptions, io: { out: (l: string) => void }): number {
  if (!existsSync(o.report_dir) || !statSync(o.report_dir).isDirectory()) throw new InputError(o.report_dir, 'no such report directory');
  const out = o.out ?? join(o.report_dir, 'dashboard.html');
  // Before any work: the page's directory is created and proved writable, and the page may only
  // replace an earlier dashboard, never a report or a directory.
  const flag = o.out === undefined ? '--report_dir' : '--out';
  prepareOutputDir(flag, dirname(out));
  if (existsSync(out)) {
    if (statSync(out).isDirectory()) throw new UsageError(flag, `${out}: is a directory; name the page's file`);
    if (!readFileSync(out, 'utf8').includes(DASHBOARD_MARK)) throw new UsageError(flag, `${out}: exists and is not a fusegen dashboard; not replacing it`);
  }
  const html = buildDashboard(o.report_dir, { outDir: dirname(resolve(out)) });
  writeTextAtomic(out, html);
  io.out(out);
  return 0;
}
