/**
 * `fusegen dashboard`: one self-contained HTML page over every bench and compare report in
 * a directory (trends over time, all runs with links). Written atomically; prints its path.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { writeTextAtomic } from '../report/write.js';
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

export function runDashboardCommand(o: DashboardCliOptions, io: { out: (l: string) => void }): number {
  if (!existsSync(o.report_dir) || !statSync(o.report_dir).isDirectory()) throw new InputError(o.report_dir, 'no such report directory');
  const out = o.out ?? join(o.report_dir, 'dashboard.html');
  const html = buildDashboard(o.report_dir, { outDir: dirname(resolve(out)) });
  writeTextAtomic(out, html);
  io.out(out);
  return 0;
}
