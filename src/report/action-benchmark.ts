/**
 * github-action-benchmark's custom tool formats, from the bench report: `customSmallerIsBetter`
 * (time per output token and time to first token per point, ms) and `customBiggerIsBetter`
 * (decode tokens/s). Each entry is `{ name, unit, value, range?, extra? }`, the format that
 * action reads (https://github.com/benchmark-action/github-action-benchmark, "custom"); `range`
 * and `extra` are text it shows beside the value.
 *
 * `range` is the half-width around the value of the median's 95% bootstrap interval over the
 * measured runs and their steps (speed-stats.ts: the same resampling as every other interval in
 * the reports), so a chart shows how far a point can be trusted; `extra` says the interval, p90
 * and what was resampled. Entries whose value is not a finite number are left out (the action
 * cannot read them), and names are unique: the action keys its history by name.
 */
import type { BenchReport, BenchRow } from './bench-report.js';
import { bootstrapRatio, decodeSteps, firstTokens, type RatioInterval } from './speed-stats.js';

export interface ActionBenchmarkEntry {
  name: string;
  unit: string;
  value: number;
  range?: string;
  extra?: string;
}

/** The interval of a median itself: the samples over a fixed 1. */
function medianInterval(groups: number[][]): RatioInterval {
  return bootstrapRatio(groups, 1, 'median');
}

const fmt = (x: number, digits: number) => x.toFixed(digits);

function entry(name: string, unit: string, value: number, digits: number, details: string[], iv?: RatioInterval): ActionBenchmarkEntry | undefined {
  if (!Number.isFinite(value)) return undefined;
  const e: ActionBenchmarkEntry = { name, unit, value };
  const extra = [...details];
  if (iv && Number.isFinite(iv.low) && Number.isFinite(iv.high)) {
    e.range = `± ${fmt(Math.max(iv.high - value, value - iv.low, 0), digits)}`;
    extra.unshift(`${Math.round(iv.level * 100)}% CI ${fmt(iv.low, digits)}-${fmt(iv.high, digits)} ${unit} (bootstrap over ${iv.over})`);
  }
  if (extra.length) e.extra = extra.join('; ');
  return e;
}

/** One direction each, as the action's `tool: customSmallerIsBetter` / `customBiggerIsBetter` read them. */
export function actionBenchmark(report: BenchReport): { smaller: ActionBenchmarkEntry[]; bigger: ActionBenchmarkEntry[] } {
  const name = (r: BenchRow, what: string) => `${report.model.modelType} ${report.device} ${report.dtype} ${r.pipeline} b${r.batch} p${r.promptLength} ${what}`;
  const status = report.status === 'complete' ? [] : [`${report.status} run`];
  const runs = (r: BenchRow) => (r.samples ? [`${r.samples.length} run${r.samples.length === 1 ? '' : 's'}`] : []);
  const smaller: Array<ActionBenchmarkEntry | undefined> = [];
  const bigger: Array<ActionBenchmarkEntry | undefined> = [];
  for (const r of report.rows) {
    const s = r.samples && r.samples.length ? r.samples : undefined;
    smaller.push(entry(name(r, 'time per output token'), 'ms', r.tpotMs.median, 4, [`p90 ${fmt(r.tpotMs.p90, 4)} ms`, ...runs(r), ...status], s ? medianInterval(decodeSteps(s)) : undefined));
    smaller.push(entry(name(r, 'time to first token'), 'ms', r.ttftMs.median, 3, [`p90 ${fmt(r.ttftMs.p90, 3)} ms`, ...runs(r), ...status], s ? medianInterval(firstTokens(s)) : undefined));
    bigger.push(entry(name(r, 'decode throughput'), 'tokens/s', r.decodeTokensPerSec, 1, [...runs(r), ...status]));
  }
  const defined = (xs: Array<ActionBenchmarkEntry | undefined>) => xs.filter((x): x is ActionBenchmarkEntry => x !== undefined);
  return { smaller: defined(smaller), bigger: defined(bigger) };
}
