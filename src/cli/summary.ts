/**
 * Where compare and bench put their Markdown summary (src/report/summary-md.ts): `--summary_md
 * FILE` (replaced whole), and, when GitHub Actions set `$GITHUB_STEP_SUMMARY`, appended to that
 * file too (GitHub's contract is append: every step of a job adds to the job's page). Both places
 * are proven writable in the command's validation pass, before any work, as `--report_dir` is;
 * the summary is written wherever the report is: a passed or failed gate, an interrupted run,
 * and the partial report of a second Ctrl-C.
 */
import { appendFileSync } from 'node:fs';
import { prepareAppendFile, prepareOutputFile, writeTextAtomic } from '../report/write.js';
import { text, type OptionSpec } from './options.js';

/** The variable GitHub Actions sets to each step's summary file. */
export const STEP_SUMMARY_ENV = 'GITHUB_STEP_SUMMARY';

export const summaryMdOption: OptionSpec<string | undefined> = {
  flag: 'summary_md',
  arg: 'file',
  help: `write a Markdown summary of the run (gate verdict, verdicts, speedup with its interval, regressions) to this file, replacing it; with $${STEP_SUMMARY_ENV} set (GitHub Actions) it is appended there too`,
  parse: text,
};

export interface SummaryTargets {
  /** --summary_md, absolute. */
  file?: string;
  /** $GITHUB_STEP_SUMMARY, absolute. */
  stepSummary?: string;
}

/** Validates both places (one line naming the flag or the variable, exit 2); an empty variable counts as unset. */
export function prepareSummaryTargets(file: string | undefined, env: NodeJS.ProcessEnv = process.env): SummaryTargets {
  const targets: SummaryTargets = {};
  if (file !== undefined) targets.file = prepareOutputFile('--summary_md', file);
  const step = env[STEP_SUMMARY_ENV];
  if (step) {
    const abs = prepareAppendFile(`$${STEP_SUMMARY_ENV} (environment)`, step);
    // The same file twice would hold the summary twice.
    if (abs !== targets.file) targets.stepSummary = abs;
  }
  return targets;
}

/** Writes the summary to each place; returns the --summary_md path when there is one, for the console. */
export function writeSummary(targets: SummaryTargets, markdown: string): string | undefined {
  if (targets.file) writeTextAtomic(targets.file, markdown);
  // A blank line first: the step's file may already hold another summary.
  if (targets.stepSummary) appendFileSync(targets.stepSummary, `\n${markdown}`);
  return targets.file;
}
