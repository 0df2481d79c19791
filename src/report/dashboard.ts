/**
 * The dashboard: every bench and compare report under a directory on one self-contained
 * page: trends over time per (model type, device, dtype, pipeline) as inline SVG line
 * charts, and a table of all runs linking to each report's HTML page. Unreadable or
 * wrong-schema files are skipped and listed, never fatal. `bench --url` reports
 * (`-bench-serve.json`, a load test of a server) are runs too, with trends per served model
 * and URL.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { BenchReport, BenchRow } from './bench-report.js';
import { validateBenchReport } from './bench-validate.js';
import { EXTRA_CSS, seriesClass } from './bench-html.js';
import { COMPARE_SCHEMA, type CompareReport } from './compare-report.js';
import type { ServeBenchReport } from './serve-bench-report.js';
import { validateServeBenchReport } from './serve-bench-validate.js';
import { CSS, esc, finite, fixed, lineChart, NA, rich, type Series, pageHead } from './html.js';
import { ratioText } from './speed-stats.js';

export interface DashboardRun {
  kind: 'bench' | 'compare' | 'serve';
  /** Path of the JSON file. */
  file: string;
  /** Path of the HTML page beside it, when it exists. */
  html: string | null;
  createdAt: string;
  time: number;
  report: BenchReport | CompareReport | ServeBenchReport;
}

export interface DashboardData {
  runs: DashboardRun[];
  skipped: Array<{ file: string; reason: string }>;
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Why a parsed bench report cannot be used (its validator's line), or null. */
function benchProblem(x: unknown): string | null {
  try {
    validateBenchReport(x);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function serveProblem(x: unknown): string | null {
  try {
    validateServeBenchReport(x);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function compareProblem(x: unknown): string | null {
  if (!isObj(x)) return 'not a JSON object';
  if (x.schema !== COMPARE_SCHEMA) return `schema is ${JSON.stringify(x.schema)}, expected "${COMPARE_SCHEMA}"`;
  if (typeof x.createdAt !== 'string' || Number.isNaN(Date.parse(x.createdAt))) return 'createdAt is not a date';
  if (!isObj(x.model) || typeof x.model.dir !== 'string' || typeof x.model.modelType !== 'string') return 'model is missing';
  if (!isObj(x.settings) || typeof x.settings.device !== 'string' || typeof x.settings.dtype !== 'string') return 'settings are missing';
  if (!isObj(x.summary) || !isObj(x.gate) || !Array.isArray(x.prompts)) return 'summary, gate or prompts is missing';
  if (x.speed !== null && x.speed !== undefined && (!isObj(x.speed) || !isObj(x.speed.candidate))) return 'speed is malformed';
  return null;
}

function walk(dir: string, out: string[], depth = 0): void {
  if (depth > 8) return;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const p = join(dir, n);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) walk(p, out, depth + 1);
    else if (st.isFile() && (n.endsWith('-compare.json') || n.endsWith('-bench.json') || n.endsWith('-bench-serve.json'))) out.push(p);
  }
}

/** Reads every `*-compare.json`, `*-bench.json` and `*-bench-serve.json` under `dir`, oldest first. */
export function loadReports(dir: string): DashboardData {
  const files: string[] = [];
  walk(dir, files);
  const runs: DashboardRun[] = [];
  const skipped: DashboardData['skipped'] = [];
  for (const file of files) {
    const kind = file.endsWith('-bench-serve.json') ? 'serve' : file.endsWith('-bench.json') ? 'bench' : 'compare';
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      skipped.push({ file, reason: `unreadable: ${(e as Error).message}` });
      continue;
    }
    const problem = kind === 'bench' ? benchProblem(parsed) : kind === 'serve' ? serveProblem(parsed) : compareProblem(parsed);
    if (problem) {
      skipped.push({ file, reason: problem });
      continue;
    }
    const report = parsed as BenchReport | CompareReport | ServeBenchReport;
    const htmlPath = file.replace(/\.json$/, '.html');
    runs.push({ kind, file, html: existsSync(htmlPath) ? htmlPath : null, createdAt: report.createdAt, time: Date.parse(report.createdAt), report });
  }
  runs.sort((a, b) => a.time - b.time || a.file.localeCompare(b.file));
  return { runs, skipped };
}

const DAY = 86_400_000;

function href(from: string, to: string): string {
  return relative(from, to).split(sep).map(encodeURIComponent).join('/');
}

function modelName(dir: string): string {
  return dir.split(/[\\/]+/).filter(Boolean).pop() ?? dir;
}

interface Trend {
  key: string;
  points: Array<[number, number]>;
}

function addPoint(map: Map<string, Trend>, key: string, x: number, y: number): void {
  const t = map.get(key) ?? { key, points: [] };
  t.points.push([x, y]);
  map.set(key, t);
}

function toSeries(map: Map<string, Trend>, classes: Map<string, string>): Series[] {
  return [...map.values()].map((t) => ({ name: t.key, cls: classes.get(t.key) ?? seriesClass(0), points: t.points.sort((a, b) => a[0] - b[0]) }));
}

function chart(cls: string, title: string, yLabel: string, xLabel: string, series: Series[]): string {
  return `<figure>${lineChart({ cls: `trend ${cls}`, title, xLabel, yLabel, series })}<figcaption>${esc(title)}</figcaption></figure>`;
}

function benchSummary(r: BenchReport): string {
  const best = Math.max(...r.rows.map((x) => x.decodeTokensPerSec).filter(finite));
  return `${r.rows.length} row${r.rows.length === 1 ? '' : 's'} · pipelines ${esc([...new Set(r.rows.map((x) => x.pipeline))].join(', ')) || '–'} · best decode ${finite(best) ? `${best.toFixed(1)} tok/s` : NA}`;
}

/** The decode speedup with its interval ("no significant difference" where it includes 1); a bare ratio in reports older than the intervals. */
function compareSpeedup(r: CompareReport): string {
  const iv = r.speed?.intervals?.tpotMedian;
  if (iv) return esc(ratioText(iv, '×', '–'));
  return finite(r.speed?.decodeSpeedup) ? `${r.speed!.decodeSpeedup.toFixed(2)}×` : NA;
}

/** A `bench --url` run in a cell: its points, the best output throughput among them, failures. */
function serveSummary(r: ServeBenchReport): string {
  const best = Math.max(...r.points.map((p) => p.outputThroughput).filter(finite));
  const failed = r.points.reduce((a, p) => a + p.failed, 0);
  return `${r.points.length} point${r.points.length === 1 ? '' : 's'} · ${rich(r.target.url)} · best ${finite(best) ? `${best.toFixed(1)} output tok/s` : NA}${failed ? ` · ${failed} failed request${failed === 1 ? '' : 's'}` : ''}`;
}

function compareSummary(r: CompareReport): string {
  const s = r.summary;
  return `<span class="badge v-match">${fixed(s.matches, 0)}</span> <span class="badge v-tolerated">${fixed(s.tolerated, 0)}</span> <span class="badge v-mismatch">${fixed(s.mismatches, 0)}</span> <span class="badge v-errored">${fixed(s.errored, 0)}</span> · speedup ${compareSpeedup(r)} · gate ${r.gate.exitCode === 0 ? 'pass' : 'fail'}`;
}

/**
 * The dashboard page for the reports under `dir`. Links are relative to `outDir` (where
 * the page will be written; default `dir`).
 */
export function buildDashboard(dir: string, options: { outDir?: string } = {}): string {
  const outDir = options.outDir ?? dir;
  const { runs, skipped } = loadReports(dir);
  const t0 = runs.length ? Math.min(...runs.map((r) => r.time)) : 0;
  const day0 = new Date(Math.floor(t0 / DAY) * DAY).toISOString().slice(0, 10);
  const xOf = (t: number) => (t - Math.floor(t0 / DAY) * DAY) / DAY;
  const xLabel = `days since ${day0} (UTC)`;

  const decode1 = new Map<string, Trend>();
  const decodeMax = new Map<string, Trend>();
  const tpot1 = new Map<string, Trend>();
  const tpotMax = new Map<string, Trend>();
  const speedup = new Map<string, Trend>();
  const verdicts = new Map<string, Map<string, Trend>>();
  const serveOut = new Map<string, Trend>();
  const serveTtft = new Map<string, Trend>();
  const keys = new Set<string>();
  for (const run of runs) {
    const x = xOf(run.time);
    if (run.kind === 'bench') {
      const r = run.report as BenchReport;
      const byPipe = new Map<string, BenchRow[]>();
      for (const row of r.rows) byPipe.set(row.pipeline, [...(byPipe.get(row.pipeline) ?? []), row]);
      for (const [pipe, rows] of byPipe) {
        const key = `${r.model.modelType} · ${r.device} · ${r.dtype} · ${pipe}`;
        keys.add(key);
        // Several prompt lengths: the shortest prompt stands for the run.
        const pick = (b: number) => rows.filter((x) => x.batch === b).sort((a, c) => a.promptLength - c.promptLength)[0];
        const one = pick(1);
        const maxBatch = Math.max(...rows.map((x) => x.batch));
        const big = pick(maxBatch);
        if (one) {
          addPoint(decode1, key, x, one.decodeTokensPerSec);
          addPoint(tpot1, key, x, one.tpotMs.median);
        }
        if (big) {
          addPoint(decodeMax, key, x, big.decodeTokensPerSec);
          addPoint(tpotMax, key, x, big.tpotMs.median);
        }
      }
    } else if (run.kind === 'serve') {
      const r = run.report as ServeBenchReport;
      const key = `${r.target.model} · ${r.target.url}`;
      keys.add(key);
      // The best output throughput of the run's points, and the median TTFT of its first (lightest) point.
      const best = Math.max(...r.points.map((p) => p.outputThroughput).filter(finite));
      if (finite(best)) addPoint(serveOut, key, x, best);
      const ttft = r.points[0]?.ttftMs.median;
      if (finite(ttft)) addPoint(serveTtft, key, x, ttft);
    } else {
      const r = run.report as CompareReport;
      // A speedup over Hugging Face transformers is another series than one over transformers.js.
      const key = `${r.model.modelType} · ${r.settings.device} · ${r.settings.dtype} · ${r.settings.kernels ?? 'none'}${r.settings.reference === 'hf' ? ' · vs hf' : ''}`;
      keys.add(key);
      if (r.speed) addPoint(speedup, key, x, r.speed.decodeSpeedup);
      const v = verdicts.get(key) ?? new Map<string, Trend>();
      addPoint(v, 'match', x, r.summary.matches);
      addPoint(v, 'tolerated', x, r.summary.tolerated);
      addPoint(v, 'mismatch', x, r.summary.mismatches);
      addPoint(v, 'errored', x, r.summary.errored);
      verdicts.set(key, v);
    }
  }
  const classes = new Map([...keys].map((k, i) => [k, seriesClass(i)]));
  const verdictClasses = new Map([
    ['match', 'v-match'],
    ['tolerated', 'v-tolerated'],
    ['mismatch', 'v-mismatch'],
    ['errored', 'v-errored'],
  ]);

  const benchCharts = decode1.size + decodeMax.size
    ? `<div class="charts-grid">
${chart('decode-b1', 'Decode tokens/s, batch 1', 'decode tokens/s', xLabel, toSeries(decode1, classes))}
${chart('decode-bmax', 'Decode tokens/s, largest batch of each run', 'decode tokens/s', xLabel, toSeries(decodeMax, classes))}
${chart('tpot-b1', 'Time per output token (median), batch 1', 'ms per token', xLabel, toSeries(tpot1, classes))}
${chart('tpot-bmax', 'Time per output token (median), largest batch of each run', 'ms per token', xLabel, toSeries(tpotMax, classes))}
</div>`
    : '<p class="muted">No bench runs.</p>';
  const compareCharts = verdicts.size
    ? `<div class="charts-grid">
${speedup.size ? chart('speedup', 'Compare: decode speedup (candidate / reference)', 'speedup ×', xLabel, toSeries(speedup, classes)) : ''}
${[...verdicts].map(([key, v]) => chart('verdicts', `Compare verdicts: ${key}`, 'prompts', xLabel, toSeries(v, verdictClasses))).join('\n')}
</div>`
    : '<p class="muted">No compare runs.</p>';

  const serveCharts = serveOut.size + serveTtft.size
    ? `<div class="charts-grid">
${chart('serve-output', 'bench --url: output tokens/s, best point of each run', 'output tokens/s', xLabel, toSeries(serveOut, classes))}
${chart('serve-ttft', 'bench --url: median time to first token, first point of each run', 'ms', xLabel, toSeries(serveTtft, classes))}
</div>`
    : '';

  const rows = [...runs]
    .reverse()
    .map((run) => {
      const link = run.html ? `<a class="report-link" href="${esc(href(outDir, run.html))}">HTML</a>` : '<span class="muted">no HTML</span>';
      const json = `<a class="json-link" href="${esc(href(outDir, run.file))}">JSON</a>`;
      const status = run.report.status === 'complete' ? 'complete' : `<b>${rich(run.report.status)}</b>`;
      if (run.kind === 'serve') {
        // A server: its served model and URL; it has no model type, device or dtype of ours.
        const r = run.report as ServeBenchReport;
        return `<tr class="run serve"><td>${esc(run.createdAt)}</td><td>bench --url</td><td class="model"><span title="${esc(r.target.url)}">${rich(r.target.model)}</span></td><td>–</td><td>–</td><td>–</td><td>${status}</td><td>${serveSummary(r)}</td><td>${link} · ${json}</td></tr>`;
      }
      const r = run.report as BenchReport | CompareReport;
      const bench = run.kind === 'bench' ? (r as BenchReport) : null;
      const cmp = run.kind === 'compare' ? (r as CompareReport) : null;
      const device = bench ? bench.device : cmp!.settings.device;
      const dtype = bench ? bench.dtype : cmp!.settings.dtype;
      return `<tr class="run ${run.kind}"><td>${esc(run.createdAt)}</td><td>${run.kind}</td><td class="model"><span title="${esc(r.model.dir)}">${rich(modelName(r.model.dir))}</span></td><td>${rich(r.model.modelType)}</td><td>${rich(device)}</td><td>${rich(dtype)}</td><td>${status}</td><td>${bench ? benchSummary(bench) : compareSummary(cmp!)}</td><td>${link} · ${json}</td></tr>`;
    })
    .join('\n');
  const table = runs.length
    ? `<div class="table-wrap"><table class="table runs"><thead><tr><th>created</th><th>kind</th><th>model</th><th>type</th><th>device</th><th>dtype</th><th>status</th><th>summary</th><th>reports</th></tr></thead><tbody>${rows}</tbody></table></div>`
    : '<p class="muted">No reports found.</p>';
  const skippedList = skipped.length
    ? `<section class="card skipped" id="skipped"><h2>Skipped files</h2><ul>${skipped.map((s) => `<li><code>${rich(relative(dir, s.file))}</code>: ${rich(s.reason)}</li>`).join('')}</ul></section>`
    : '';
  const vcss = '.series.v-match,.legend-swatch.v-match{stroke:var(--match)}.series.v-tolerated,.legend-swatch.v-tolerated{stroke:var(--tolerated)}.series.v-mismatch,.legend-swatch.v-mismatch{stroke:var(--mismatch)}.series.v-errored,.legend-swatch.v-errored{stroke:var(--errored)}.dot.v-match{fill:var(--match)}.dot.v-tolerated{fill:var(--tolerated)}.dot.v-mismatch{fill:var(--mismatch)}.dot.v-errored{fill:var(--errored)}';
  return `${pageHead(`fusegen dashboard`, `fusegen dashboard`, `${CSS}${EXTRA_CSS}${vcss}`)}
<body>
<main>
<header class="page-head"><div class="title-row"><h1>fusegen dashboard</h1></div>
<p class="subtitle">${runs.length} run${runs.length === 1 ? '' : 's'} (${runs.filter((r) => r.kind === 'bench').length} bench, ${runs.filter((r) => r.kind === 'compare').length} compare${runs.some((r) => r.kind === 'serve') ? `, ${runs.filter((r) => r.kind === 'serve').length} bench --url` : ''})${skipped.length ? ` · ${skipped.length} file${skipped.length === 1 ? '' : 's'} skipped` : ''}</p></header>
<section class="card" id="bench-trends"><h2>Bench trends</h2>${benchCharts}</section>
<section class="card" id="compare-trends"><h2>Compare trends</h2>${compareCharts}</section>
${serveCharts ? `<section class="card" id="serve-trends"><h2>Server load tests (bench --url)</h2>${serveCharts}</section>` : ''}
<section class="card" id="runs"><h2>Runs</h2>${table}</section>
${skippedList}
<footer>fusegen dashboard · ${runs.length ? `${esc(runs[0]!.createdAt)} – ${esc(runs[runs.length - 1]!.createdAt)}` : 'no runs'}</footer>
</main>
</body>
</html>
`;
}
