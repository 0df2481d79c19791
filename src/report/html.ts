/**
 * The compare report as one self-contained HTML page: inline CSS, inline SVG charts drawn
 * here, no script, no external resource (a Content-Security-Policy says so to the browser).
 *
 * Every string from the report (model output, prompts, paths, errors) goes through `esc`
 * or `rich`: HTML-escaped, with characters a page cannot show faithfully made visible as
 * escapes: C0/C1 controls (a NUL cannot exist in an HTML document at all), bidi overrides
 * (they would reorder the page around them) and lone surrogates (UTF-8 cannot encode them),
 * so the page is always well-formed UTF-8. Numbers that are not finite (or null, in a
 * report read back from JSON) show as "n/a".
 */
import { comparedLine, referenceLine, servedLine, type CompareReport, type LogitStats, type PipelineSpeed, type PromptResult, type Verdict } from './compare-report.js';
import { ratioText, type RatioInterval } from './speed-stats.js';

// ---------------------------------------------------------------------------------------
// Text

const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Entity characters, controls (not \t \n), DEL and C1, bidi embeddings/overrides/isolates, lone surrogates. */
const SPECIAL = /[&<>"']|[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|[\t\n]/g;

function visibleEscape(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  return `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Escaped text for element content, attributes and SVG text: invisible or unencodable
 * characters become plain-text escapes (`\u0000`); `lines` keeps \n and \t as they are.
 */
export function esc(s: string, lines = false): string {
  return String(s).replace(SPECIAL, (c) => ENTITY[c] ?? (lines && (c === '\n' || c === '\t') ? c : visibleEscape(c)));
}

/** Like `esc` for element content, with the escapes styled apart from the text around them. */
export function rich(s: string, lines = false): string {
  return String(s).replace(SPECIAL, (c) => ENTITY[c] ?? (lines && (c === '\n' || c === '\t') ? c : `<span class="ctl">${visibleEscape(c)}</span>`));
}

/** First `n` code points, with an ellipsis when cut. */
export function clip(s: string, n: number): string {
  const cps = Array.from(s);
  return cps.length > n ? `${cps.slice(0, n).join('')}…` : s;
}

function shellWord(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------
// Numbers

export function finite(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}
export const NA = '<span class="na">n/a</span>';
export function fixed(x: unknown, digits: number): string {
  return finite(x) ? x.toFixed(digits) : NA;
}
/** Logit-sized figures: 3 significant digits, scientific when tiny or huge. */
function sig(x: unknown): string {
  if (!finite(x)) return NA;
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a < 1e-3 || a >= 1e5) return x.toExponential(2);
  return a >= 100 ? x.toFixed(1) : x.toPrecision(3);
}
function pct(x: unknown, digits = 1): string {
  return finite(x) ? `${(x * 100).toFixed(digits)}%` : NA;
}
/** Plain-text number for SVG labels. */
export function plain(x: number, digits: number): string {
  return finite(x) ? x.toFixed(digits) : 'n/a';
}

// ---------------------------------------------------------------------------------------
// SVG charts

const r1 = (x: number) => (Math.round(x * 10) / 10).toString();

function niceStep(range: number, count: number): number {
  const raw = range / Math.max(1, count);
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
}

function ticks(min: number, max: number, step: number): number[] {
  const out: number[] = [];
  const start = Math.ceil(min / step - 1e-9) * step;
  for (let v = start, i = 0; v <= max + step * 1e-9 && i < 50; i++, v = start + i * step) out.push(v);
  return out;
}

function tickLabel(v: number, step: number): string {
  if (v === 0) return '0';
  if (step < 1e-3 || Math.abs(v) >= 1e6) return v.toExponential(1);
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

export interface Series {
  name: string;
  cls: string;
  points: Array<[number, number]>;
}

export interface LineChartSpec {
  cls: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Vertical markers. */
  markers?: Array<{ x: number; label: string; cls: string }>;
  /** Shaded x ranges. */
  bands?: Array<{ from: number; to: number; label: string; cls: string }>;
  /** Horizontal reference lines; drawn only inside the data's range. */
  hlines?: Array<{ y: number; label: string; cls: string }>;
  integerX?: boolean;
}

export function lineChart(spec: LineChartSpec): string {
  const W = 760;
  const H = 260;
  const m = { l: 64, r: 16, t: 30, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = spec.series.flatMap((s) => s.points.filter(([x, y]) => finite(x) && finite(y)));
  const parts: string[] = [];
  parts.push(`<svg class="chart ${esc(spec.cls)}" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(spec.title)}" xmlns="http://www.w3.org/2000/svg">`);
  parts.push(`<title>${esc(spec.title)}</title>`);
  parts.push(`<rect class="plot-bg" x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/>`);
  if (pts.length === 0) {
    parts.push(`<text class="nodata" x="${W / 2}" y="${m.t + ph / 2}" text-anchor="middle">no finite data points</text></svg>`);
    return parts.join('');
  }
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  for (const b of spec.bands ?? []) {
    x0 = Math.min(x0, b.from);
    x1 = Math.max(x1, b.to);
  }
  if (x1 === x0) {
    x0 -= 1;
    x1 += 1;
  }
  const yMinData = Math.min(0, ...pts.map((p) => p[1]));
  let yMaxData = Math.max(...pts.map((p) => p[1]));
  const hl = (spec.hlines ?? []).filter((h) => finite(h.y) && h.y > 0 && h.y <= Math.max(yMaxData, 1e-300) * 4);
  yMaxData = Math.max(yMaxData, ...hl.map((h) => h.y));
  if (yMaxData <= yMinData) yMaxData = yMinData + 1;
  const yStep = niceStep(yMaxData - yMinData, 5);
  const y0 = Math.floor(yMinData / yStep) * yStep;
  const y1 = Math.ceil(yMaxData / yStep - 1e-9) * yStep;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;

  for (const b of spec.bands ?? []) {
    const a = sx(Math.max(x0, b.from));
    const z = sx(Math.min(x1, b.to));
    parts.push(`<rect class="band ${esc(b.cls)}" x="${r1(a)}" y="${m.t}" width="${r1(Math.max(0, z - a))}" height="${ph}"/>`);
    parts.push(`<text class="band-label" x="${r1(a + 4)}" y="${m.t + 12}">${esc(b.label)}</text>`);
  }
  for (const v of ticks(y0, y1, yStep)) {
    parts.push(`<line class="gridline" x1="${m.l}" x2="${m.l + pw}" y1="${r1(sy(v))}" y2="${r1(sy(v))}"/>`);
    parts.push(`<text class="tick" x="${m.l - 6}" y="${r1(sy(v) + 4)}" text-anchor="end">${esc(tickLabel(v, yStep))}</text>`);
  }
  const xStep = Math.max(spec.integerX ? 1 : 0, niceStep(x1 - x0, 8));
  for (const v of ticks(x0, x1, xStep)) {
    parts.push(`<line class="xtick" x1="${r1(sx(v))}" x2="${r1(sx(v))}" y1="${m.t + ph}" y2="${m.t + ph + 4}"/>`);
    parts.push(`<text class="tick" x="${r1(sx(v))}" y="${m.t + ph + 17}" text-anchor="middle">${esc(tickLabel(v, xStep))}</text>`);
  }
  parts.push(`<line class="axis" x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}"/>`);
  parts.push(`<line class="axis" x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}"/>`);
  parts.push(`<text class="axis-label" x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text class="axis-label" transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  for (const h of hl) {
    parts.push(`<line class="hline ${esc(h.cls)}" x1="${m.l}" x2="${m.l + pw}" y1="${r1(sy(h.y))}" y2="${r1(sy(h.y))}"/>`);
    parts.push(`<text class="hline-label" x="${m.l + pw - 4}" y="${r1(sy(h.y) - 4)}" text-anchor="end">${esc(h.label)}</text>`);
  }
  for (const mk of spec.markers ?? []) {
    if (!finite(mk.x) || mk.x < x0 || mk.x > x1) continue;
    const x = r1(sx(mk.x));
    parts.push(`<line class="marker ${esc(mk.cls)}" x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t + ph}"/>`);
    const anchor = sx(mk.x) > m.l + pw * 0.7 ? 'end' : 'start';
    parts.push(`<text class="marker-label ${esc(mk.cls)}" x="${anchor === 'end' ? r1(sx(mk.x) - 4) : r1(sx(mk.x) + 4)}" y="${m.t + 26}" text-anchor="${anchor}">${esc(mk.label)}</text>`);
  }
  for (const s of spec.series) {
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!finite(x) || !finite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${r1(sx(x))} ${r1(sy(y))}`;
      pen = true;
    }
    parts.push(`<path class="series ${esc(s.cls)}" d="${d}"><title>${esc(s.name)}</title></path>`);
    const finitePts = s.points.filter(([x, y]) => finite(x) && finite(y));
    if (finitePts.length <= 64) {
      for (const [x, y] of finitePts) parts.push(`<circle class="dot ${esc(s.cls)}" cx="${r1(sx(x))}" cy="${r1(sy(y))}" r="2.5"/>`);
    }
  }
  // Legend, top left above the plot.
  let lx = m.l;
  for (const s of spec.series) {
    parts.push(`<line class="legend-swatch ${esc(s.cls)}" x1="${lx}" x2="${lx + 18}" y1="14" y2="14"/>`);
    parts.push(`<text class="legend" x="${lx + 24}" y="18">${esc(s.name)}</text>`);
    lx += 40 + Array.from(s.name).length * 7;
  }
  parts.push('</svg>');
  return parts.join('');
}

interface BarRow {
  label: string;
  unit: string;
  ref: number;
  cand: number;
  higherIsBetter: boolean;
  digits: number;
  /** The candidate-better ratio with its bootstrap interval, where the report has one. */
  interval?: RatioInterval;
}

function barChart(rows: BarRow[], refName: string, candName: string): string {
  const W = 760;
  const rowH = 46;
  const top = 46;
  const labelW = 170;
  const ratioW = 180;
  const barMax = W - labelW - ratioW - 80;
  const H = top + rows.length * rowH + 6;
  const parts: string[] = [];
  parts.push(`<svg class="chart speed-bars" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="reference and candidate speed" xmlns="http://www.w3.org/2000/svg">`);
  parts.push('<title>Reference vs candidate speed</title>');
  parts.push(`<rect class="legend-box ref" x="${labelW}" y="6" width="12" height="12"/><text class="legend" x="${labelW + 18}" y="16">reference: ${esc(clip(refName, 70))}</text>`);
  parts.push(`<rect class="legend-box cand" x="${labelW}" y="24" width="12" height="12"/><text class="legend" x="${labelW + 18}" y="34">candidate: ${esc(clip(candName, 70))}</text>`);
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const max = Math.max(finite(row.ref) ? row.ref : 0, finite(row.cand) ? row.cand : 0);
    const w = (v: number) => (finite(v) && max > 0 ? Math.max(1, (v / max) * barMax) : 0);
    parts.push(`<text class="bar-label" x="${labelW - 10}" y="${y + 20}" text-anchor="end">${esc(row.label)}</text>`);
    parts.push(`<text class="bar-unit" x="${labelW - 10}" y="${y + 34}" text-anchor="end">${esc(row.unit)}</text>`);
    for (const [k, v, dy] of [['ref', row.ref, 4], ['cand', row.cand, 22]] as const) {
      const bw = w(v);
      parts.push(`<rect class="bar ${k}" x="${labelW}" y="${y + dy}" width="${r1(bw)}" height="16" rx="2"/>`);
      parts.push(`<text class="bar-value" x="${r1(labelW + bw + 6)}" y="${y + dy + 12}">${esc(plain(v, row.digits))}</text>`);
    }
    const ratio = row.higherIsBetter ? row.cand / row.ref : row.ref / row.cand;
    const iv = row.interval;
    if (iv && finite(iv.estimate)) {
      // With statistics: a difference only where the interval excludes 1.
      const better = iv.estimate >= 1;
      const ci = `${Math.round(iv.level * 100)}% CI ${iv.low.toFixed(2)}–${iv.high.toFixed(2)}×`;
      const [cls, head, tail] = iv.significant ? [better ? 'better' : 'worse', `${iv.estimate.toFixed(2)}× ${better ? 'better' : 'worse'}`, ci] : ['same', 'no significant difference', `${iv.estimate.toFixed(2)}×, ${ci}`];
      parts.push(`<g class="bar-verdict"><title>${esc(`${row.label}: ${ratioText(iv, '×', '–')}`)}</title><text class="bar-ratio ${cls}" x="${W - 8}" y="${y + 20}" text-anchor="end">${esc(head)}</text>`);
      parts.push(`<text class="bar-ci" x="${W - 8}" y="${y + 35}" text-anchor="end">${esc(tail)}</text></g>`);
    } else if (finite(ratio) && ratio > 0) {
      const better = ratio >= 1;
      parts.push(`<text class="bar-ratio ${better ? 'better' : 'worse'}" x="${W - 8}" y="${y + 26}" text-anchor="end">${esc(`${ratio.toFixed(2)}× ${better ? 'better' : 'worse'}`)}</text>`);
    }
    if (i < rows.length - 1) parts.push(`<line class="row-sep" x1="20" x2="${W - 8}" y1="${y + rowH - 2}" y2="${y + rowH - 2}"/>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** A one-line stacked bar of the verdict counts. */
function verdictBar(s: CompareReport['summary']): string {
  const items: Array<[Verdict, number]> = [
    ['match', s.matches],
    ['tolerated', s.tolerated],
    ['mismatch', s.mismatches],
    ['errored', s.errored],
  ];
  const total = items.reduce((a, [, n]) => a + (finite(n) ? n : 0), 0);
  const W = 760;
  const parts = [`<svg class="verdict-bar" viewBox="0 0 ${W} 14" width="100%" preserveAspectRatio="none" role="img" aria-label="verdicts" xmlns="http://www.w3.org/2000/svg">`];
  if (total === 0) parts.push(`<rect class="seg empty" x="0" y="0" width="${W}" height="14"/>`);
  let x = 0;
  for (const [v, n] of items) {
    if (!finite(n) || n <= 0 || total === 0) continue;
    const w = (n / total) * W;
    parts.push(`<rect class="seg v-${v}" x="${r1(x)}" y="0" width="${r1(w)}" height="14"><title>${esc(`${v}: ${n}`)}</title></rect>`);
    x += w;
  }
  parts.push('</svg>');
  return parts.join('');
}

// ---------------------------------------------------------------------------------------
// Sections

export function badge(v: string): string {
  return `<span class="badge v-${esc(v)}">${esc(v)}</span>`;
}

export function kv(rows: Array<[string, string]>): string {
  return `<dl class="kv">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

function headerSection(r: CompareReport): string {
  const name = r.model.dir.split(/[\\/]+/).filter(Boolean).pop() ?? r.model.dir;
  const banner =
    r.status === 'complete'
      ? ''
      : `<div class="banner status-${esc(r.status)}" role="alert"><strong>${r.status === 'interrupted' ? 'Run interrupted' : 'Run failed'}</strong> — stopped by: <span class="stopped-by">${rich(r.stoppedBy || 'not recorded', true)}</span>. This report covers the ${r.prompts.length} prompt${r.prompts.length === 1 ? '' : 's'} that finished.</div>`;
  const eps = Object.entries(r.environment.executionProviders);
  const t = r.tolerance;
  return `<header class="page-head">
<div class="title-row"><h1>fusegen compare <span class="model-name">${rich(name)}</span></h1>${gateBadge(r)}</div>
<p class="subtitle">${esc(r.model.modelType)} · ${esc(r.settings.dtype)} on ${esc(r.settings.device)} · reference ${esc(r.settings.reference === 'hf' ? 'Hugging Face transformers' : 'transformers.js')} · ${esc(r.createdAt)}</p>
${banner}
<div class="grid">
<section class="card"><h2>Model</h2>${kv([
    ['reference', `<code>${rich(r.model.dir)}</code>`],
    ['candidate', `<code>${rich(r.model.candidateDir)}</code>`],
    ['type', rich(r.model.modelType)],
  ])}</section>
<section class="card"><h2>Settings</h2>${kv([
    ['dtype', rich(r.settings.dtype)],
    ['device', rich(r.settings.device)],
    ['reference pipeline', `<span class="reference-lib">${rich(referenceLine(r))}</span>`],
    ...(r.settings.remote?.candidate ? [['candidate pipeline', rich(servedLine(r.settings.remote.candidate))] as [string, string]] : []),
    ['kernel injection', r.settings.useKernel ? 'on' : 'off'],
    ['batch size', fixed(r.settings.batchSize, 0)],
    ['inputs', fixed(r.settings.numInputs, 0)],
    ['length', `${fixed(r.settings.minLength, 0)} – ${fixed(r.settings.maxLength, 0)} tokens`],
  ])}</section>
<section class="card"><h2>Tolerance</h2>${kv([
    ...(comparedLine(r) ? [['compared (a side served)', rich(comparedLine(r)!)] as [string, string]] : []),
    ...((t.floor
      ? [
          ['floor', `each prompt's own ${rich(r.settings.dtype)} error: fusegen's plain graph at ${rich(r.settings.dtype)} on the reference checkpoint${t.floor.device ? ` (${rich(t.floor.device)})` : ''}, teacher-forced against the reference`],
          ['logits', `|Δ| ≤ ${sig(t.floor.factor)} × the floor's worst + ${sig(t.floor.absolute)} over both sides' top-10`],
          ['full vocabulary', `KL(reference ‖ candidate) ≤ ${sig(t.floor.factor)} × the floor's worst + ${sig(t.floor.klAbsolute)} nats at every position`],
          ['top-1 agreement', `≥ the floor's − ${pct(t.floor.top1Slack)}`],
          ...(t.floor.paired ? [['against the floor', `the candidate against the floor itself (same weights, same quantization): |Δ| ≤ ${sig(t.floor.paired.atol)} over both sides' top-10, KL ≤ ${sig(t.floor.paired.maxKl)} nats`] as [string, string]] : []),
          ['tokens', "the candidate's greedy tokens follow the floor's, parting only at a near tie"],
        ]
      : [
          ['logits', `|Δ| ≤ ${sig(t.atol)} + ${sig(t.rtol)} · |ref| over ${t.maxKl === undefined ? "the reference's top-10" : "both sides' top-10"}`],
          ...(t.maxKl === undefined ? [] : [['full vocabulary', `KL(reference ‖ candidate) ≤ ${sig(t.maxKl)} nats at every position`]]),
          ['top-1 agreement', `≥ ${pct(t.minTop1Agreement)}`],
        ]) as Array<[string, string]>),
    ...(t.twin ? [['against its twin', `a candidate checkpoint: the candidate against its own pipeline at ${rich(r.settings.dtype)} on the reference checkpoint (what differs is the checkpoint): |Δ| ≤ ${sig(t.twin.atol)} over both sides' top-10, KL ≤ ${sig(t.twin.maxKl)} nats`] as [string, string]] : []),
    ['near tie', `top-2 margin ≤ ${sig(t.nearTie)}, both in top-${fixed(t.topN, 0)}`],
    ['gate', t.gate ? 'on: differences fail the run' : 'off: reported, never fails'],
  ])}</section>
<section class="card env"><h2>Environment</h2>${kv([
    ['execution providers', eps.length ? eps.map(([p, list]) => `<span class="ep"><b>${rich(p)}</b>: ${list.length ? list.map((e) => rich(e)).join(', ') : NA}</span>`).join('<br>') : NA],
    ['fusegen', rich(r.environment.fusegen)],
    ['commit', r.environment.gitCommit === null ? NA : `<code>${rich(r.environment.gitCommit)}</code>`],
    ['node', `${rich(r.environment.node)} (${rich(r.environment.platform)})`],
    ['onnxruntime-node', rich(r.environment.onnxruntimeNode)],
    ['transformers.js', rich(r.environment.transformersJs)],
    ...(r.environment.hf ? ([['Hugging Face', `transformers ${rich(r.environment.hf.transformers)} · torch ${rich(r.environment.hf.torch)} · Python ${rich(r.environment.hf.python)} · ${rich(r.environment.hf.device)}${r.environment.hf.deviceName ? ` (${rich(r.environment.hf.deviceName)})` : ''}`]] as Array<[string, string]>) : []),
    ['adapter', r.environment.adapter === null ? NA : rich(r.environment.adapter)],
  ])}</section>
</div>
<section class="card"><h2>Fusions</h2>${
    Object.keys(r.fusions).length
      ? `<div class="chips">${Object.entries(r.fusions)
          .map(([k, n]) => `<span class="chip">${rich(k)} <b>${fixed(n, 0)}</b></span>`)
          .join('')}</div>`
      : '<p class="muted">none (plain graph)</p>'
  }
<h2 class="sub">Command</h2><pre class="command">${rich(r.command.map(shellWord).join(' '))}</pre></section>
</header>`;
}

function gateBadge(r: CompareReport): string {
  const pass = r.gate.exitCode === 0;
  return `<span class="gate ${pass ? 'pass' : 'fail'}">${pass ? 'PASS' : 'FAIL'}</span>`;
}

/** A baseline check with an interval, in words: a significant slowdown, a significant speedup, or no significant difference. */
function baselineVerdict(b: NonNullable<CompareReport['gate']['baseline']>): string {
  const pct = b.regressionPct;
  if (!b.speedRatio || !finite(b.speedRatio.estimate) || !finite(pct)) return NA;
  if (b.significant) return `${pct.toFixed(1)}% slower, significant`;
  if (b.speedRatio.significant) return `none: ${(-pct).toFixed(1)}% faster, significant`;
  return `no significant difference (${pct >= 0 ? `${pct.toFixed(1)}% slower` : `${(-pct).toFixed(1)}% faster`} as estimated)`;
}

function summarySection(r: CompareReport): string {
  const s = r.summary;
  const tile = (v: Verdict, label: string, n: number) => `<div class="tile v-${v}"><div class="n">${fixed(n, 0)}</div><div class="l">${label}</div></div>`;
  const b = r.gate.baseline;
  const cand = r.speed?.candidate.decodeTokensPerSec;
  const baseline = b
    ? `<h3>Baseline</h3><table class="table baseline"><tbody>
<tr><th>file</th><td><code>${rich(b.file)}</code></td></tr>
<tr><th>baseline decode</th><td>${fixed(b.decodeTokensPerSec, 1)} tokens/s</td></tr>
<tr><th>this run decode</th><td>${fixed(cand, 1)} tokens/s</td></tr>
${
  b.speedRatio
    ? `<tr><th>speed against the baseline</th><td class="speed-ratio${b.speedRatio.significant ? '' : ' same'}">${esc(ratioText(b.speedRatio, '×', '–'))}${b.speedRatio.fixed ? ' <span class="muted">(the baseline kept no samples: its median held fixed)</span>' : ''}</td></tr>
<tr><th>regression</th><td class="${b.significant && b.regressionPct > b.maxRegressionPct ? 'bad' : 'good'}">${baselineVerdict(b)} (the gate fails on a significant regression of more than ${fixed(b.maxRegressionPct, 1)}%)</td></tr>`
    : `<tr><th>regression</th><td class="${finite(b.regressionPct) && finite(b.maxRegressionPct) && b.regressionPct > b.maxRegressionPct ? 'bad' : 'good'}">${fixed(b.regressionPct, 1)}% (allowed ${fixed(b.maxRegressionPct, 1)}%)</td></tr>`
}
</tbody></table>`
    : '';
  const rows = r.prompts
    .map(
      (p) => `<tr><td><a href="#prompt-${esc(String(p.index))}">${esc(String(p.index))}</a></td><td>${badge(p.verdict)}</td><td class="clip">${rich(clip(p.prompt, 90))}</td><td class="num">${fixed(p.similarity, 3)}</td><td class="num">${p.firstDivergence === null ? '–' : fixed(p.firstDivergence, 0)}</td><td class="num">${p.logits ? sig(p.logits.decode.unionMaxAbs ?? p.logits.decode.maxAbs) : NA}</td></tr>`,
    )
    .join('');
  return `<section class="card summary" id="summary"><h2>Summary</h2>
<div class="tiles">${tile('match', 'match', s.matches)}${tile('tolerated', 'tolerated', s.tolerated)}${tile('mismatch', 'mismatch', s.mismatches)}${tile('errored', 'errored', s.errored)}</div>
${verdictBar(s)}
<div class="gate-line">${gateBadge(r)} <span>exit code ${esc(String(r.gate.exitCode))}${r.tolerance.gate ? '' : ' · not gated at this dtype'}</span></div>
${r.gate.reasons.length ? `<ul class="reasons">${r.gate.reasons.map((x) => `<li>${rich(x, true)}</li>`).join('')}</ul>` : '<p class="muted">No gate failures.</p>'}
${baseline}
<h3>Prompts</h3>
${r.prompts.length ? `<table class="table index"><thead><tr><th>#</th><th>verdict</th><th>prompt</th><th>similarity</th><th>first divergence</th><th>decode max |Δ|</th></tr></thead><tbody>${rows}</tbody></table>` : '<p class="muted">No prompt finished.</p>'}
</section>`;
}

/** The headline: the decode speedup with its interval, or "no significant difference" where the interval includes 1. */
function speedupLine(speed: NonNullable<CompareReport['speed']>): string {
  const iv = speed.intervals?.tpotMedian;
  if (!iv || !finite(iv.estimate)) return `<div class="speedup">decode speedup <b>${finite(speed.decodeSpeedup) ? `${speed.decodeSpeedup.toFixed(2)}×` : NA}</b></div>`;
  const ci = `${Math.round(iv.level * 100)}% CI ${iv.low.toFixed(2)}–${iv.high.toFixed(2)}×`;
  const how = `median of ${iv.resamples} bootstrap ratios over ${iv.over}, seed ${iv.seed}`;
  return iv.significant
    ? `<div class="speedup significant">decode speedup <b>${iv.estimate.toFixed(2)}×</b><span class="ci">${esc(`${ci} (${how})`)}</span></div>`
    : `<div class="speedup no-difference">decode speedup: <b>no significant difference</b><span class="ci">${esc(`${iv.estimate.toFixed(2)}×, ${ci} (${how})`)}</span></div>`;
}

function speedSection(r: CompareReport): string {
  if (!r.speed) return `<section class="card speed" id="speed"><h2>Speed</h2><p class="muted">No speed measurement in this run.</p></section>`;
  const { reference: a, candidate: b, intervals: iv } = r.speed;
  const row = (label: string, f: (s: PipelineSpeed) => number, d: number, unit: string, interval?: RatioInterval) =>
    `<tr><th>${label}</th><td class="num">${fixed(f(a), d)}</td><td class="num">${fixed(f(b), d)}</td><td class="unit">${unit}</td>${iv ? `<td class="ratio${interval?.significant ? '' : ' same'}">${interval ? esc(ratioText(interval, '×', '–')) : NA}</td>` : ''}</tr>`;
  const bars = barChart(
    [
      { label: 'time to first token', unit: 'ms', ref: a.ttftMs, cand: b.ttftMs, higherIsBetter: false, digits: 2, ...(iv ? { interval: iv.ttft } : {}) },
      { label: 'per token, median', unit: 'ms', ref: a.tpotMedianMs, cand: b.tpotMedianMs, higherIsBetter: false, digits: 2, ...(iv ? { interval: iv.tpotMedian } : {}) },
      { label: 'per token, p90', unit: 'ms', ref: a.tpotP90Ms, cand: b.tpotP90Ms, higherIsBetter: false, digits: 2, ...(iv ? { interval: iv.tpotP90 } : {}) },
      { label: 'decode', unit: 'tokens/s', ref: a.decodeTokensPerSec, cand: b.decodeTokensPerSec, higherIsBetter: true, digits: 1, ...(iv ? { interval: iv.decodeThroughput } : {}) },
      // Prefill tokens/s is batch x prompt over the time to first token: the same ratio.
      { label: 'prefill', unit: 'tokens/s', ref: a.prefillTokensPerSec, cand: b.prefillTokensPerSec, higherIsBetter: true, digits: 1, ...(iv ? { interval: iv.ttft } : {}) },
    ],
    a.pipeline,
    b.pipeline,
  );
  const lines = lineChart({
    cls: 'speed-lines',
    title: 'Per-token latency against context position',
    xLabel: 'context position',
    yLabel: 'ms per token',
    series: [
      { name: `reference (${clip(a.pipeline, 24)})`, cls: 'ref', points: a.perPosition },
      { name: `candidate (${clip(b.pipeline, 24)})`, cls: 'cand', points: b.perPosition },
    ],
    integerX: true,
  });
  const runs = b.samples ? ` over ${b.samples.length} timed run${b.samples.length === 1 ? '' : 's'} per pipeline` : '';
  return `<section class="card speed" id="speed"><h2>Speed</h2>
${speedupLine(r.speed)}
<table class="table speed-table"><thead><tr><th></th><th>reference<br><span class="pipe">${rich(a.pipeline)}</span></th><th>candidate<br><span class="pipe">${rich(b.pipeline)}</span></th><th></th>${iv ? '<th>candidate vs reference</th>' : ''}</tr></thead><tbody>
${row('time to first token', (s) => s.ttftMs, 2, 'ms', iv?.ttft)}
${row('time per output token, median', (s) => s.tpotMedianMs, 3, 'ms', iv?.tpotMedian)}
${row('time per output token, p90', (s) => s.tpotP90Ms, 3, 'ms', iv?.tpotP90)}
${row('decode', (s) => s.decodeTokensPerSec, 1, 'tokens/s', iv?.decodeThroughput)}
${row('prefill', (s) => s.prefillTokensPerSec, 1, 'tokens/s', iv?.ttft)}
</tbody></table>
${iv ? `<p class="muted stats-note">Each ratio is the candidate against the reference (above 1: the candidate better)${esc(runs)}: the median of ${iv.tpotMedian.resamples} bootstrap replicates that resample the runs and, inside each, its decode steps (time to first token: the runs), with the 2.5th-97.5th percentile interval. Where the interval includes 1 the page says no significant difference.</p>` : ''}
<figure>${bars}</figure>
<figure>${lines}<figcaption>Per-token latency of the measured run against context position (prompt + generated tokens so far).</figcaption></figure>
</section>`;
}

function statsTable(l: { prefill: LogitStats; decode: LogitStats }): string {
  // The full-vocabulary figures are n/a in reports written before compare kept them.
  const opt = (x: number | undefined) => (x === undefined ? NA : sig(x));
  const row = (name: string, s: LogitStats) =>
    `<tr><th>${name}</th><td class="num">${fixed(s.positions, 0)}</td><td class="num">${sig(s.maxAbs)}</td><td class="num">${sig(s.maxRel)}</td><td class="num">${pct(s.top1Agreement)}</td><td class="num">${sig(s.meanKl)}</td><td class="num">${opt(s.unionMaxAbs)}</td><td class="num">${opt(s.fullMaxAbs)}</td><td class="num">${opt(s.maxKl)}</td></tr>`;
  return `<table class="table stats"><thead><tr><th></th><th>positions</th><th>max |Δ| (reference top-10)</th><th>max rel</th><th>top-1 agreement</th><th>mean KL (nats)</th><th>max |Δ| (both top-10)</th><th>max |Δ| (full row)</th><th>max KL (nats)</th></tr></thead><tbody>${row('prefill', l.prefill)}${row('decode', l.decode)}</tbody></table>`;
}

function tokenSpans(side: 'ref' | 'cand', g: PromptResult['reference'], div: number | null): string {
  if (g.tokens.length === 0) return '<span class="muted">(no tokens)</span>';
  return g.tokens
    .map((t, i) => {
      const cls = ['tok'];
      if (div !== null && i === div) cls.push('divergent');
      else if (div !== null && i > div) cls.push('after');
      if (t === '') cls.push('empty');
      const id = g.ids[i];
      return `<span class="${cls.join(' ')}" data-pos="${i}" title="${esc(`${side} ${i}${id === undefined ? '' : ` · id ${id}`} · ${JSON.stringify(t)}`)}">${rich(t)}</span>`;
    })
    .join('');
}

function diffView(diff: PromptResult['diff']): string {
  if (diff.length === 0) return '<span class="muted">(empty)</span>';
  return diff
    .map((run) => {
      const tag = run.kind === 'removed' ? 'del' : run.kind === 'added' ? 'ins' : 'span';
      return run.tokens.map((t) => `<${tag} class="tok ${run.kind}${t === '' ? ' empty' : ''}">${rich(t)}</${tag}>`).join('');
    })
    .join('');
}

function promptSection(p: PromptResult, r: CompareReport): string {
  const l = p.logits;
  const prefill = l ? l.prefill.positions : 0;
  const divPos = p.firstDivergence === null ? null : prefill > 0 ? prefill - 1 + p.firstDivergence : p.firstDivergence;
  let chart: string;
  if (l) {
    chart = `<figure>${lineChart({
      cls: 'logit-chart',
      title: `Prompt ${p.index}: max |logit difference| per position`,
      xLabel: 'context position (teacher-forced on the reference tokens)',
      yLabel: 'max |Δ logit|',
      series: [{ name: 'max |candidate − reference| over the reference top-10', cls: 'cand', points: l.perPositionMaxAbs.map((v, i) => [i, v as number] as [number, number]) }],
      bands: prefill > 0 ? [{ from: 0, to: prefill - 0.5, label: 'prefill', cls: 'prefill' }] : [],
      markers: divPos === null ? [] : [{ x: divPos, label: `first divergence (generated token ${p.firstDivergence})`, cls: 'divergence-marker' }],
      hlines: [{ y: p.floor?.bounds.atol ?? r.tolerance.atol, label: `${p.floor ? 'bound from the floor' : 'atol'} ${sig(p.floor?.bounds.atol ?? r.tolerance.atol).replace(/<[^>]*>/g, '')}`, cls: 'atol' }],
      integerX: true,
    })}</figure>`;
  } else {
    chart = `<p class="muted">No teacher-forced logits for this prompt${p.verdict === 'errored' ? ' (it errored)' : ''}.</p>`;
  }
  const triage = p.triage
    ? `<h4>Triage${p.triage.backend ? ` (reran on ${p.triage.backend === 'wgsl' ? 'the WGSL engine' : 'ONNX Runtime'})` : ''}</h4><table class="table triage"><thead><tr><th>variant</th><th>backend</th><th>verdict</th><th>max |Δ|</th><th>mean KL</th><th>share of the candidate's KL</th></tr></thead><tbody>${p.triage.runs
        .map((t) => `<tr><td><code>${rich(t.variant)}</code></td><td>${t.backend ?? 'ort'}</td><td>${badge(t.verdict)}</td><td class="num">${sig(t.maxAbs)}</td><td class="num">${t.meanKl === undefined ? 'n/a' : sig(t.meanKl)}</td><td class="num">${t.errorShare === undefined ? 'n/a' : `${sig(t.errorShare)}${t.explains ? ' (explains)' : ''}`}</td></tr>`)
        .join('')}</tbody></table><p class="blame"><b>Blame:</b> ${rich(p.triage.blame, true)}</p>`
    : '';
  const facts: Array<[string, string]> = [
    ['similarity', fixed(p.similarity, 4)],
    ['first divergence', p.firstDivergence === null ? 'none' : `generated token ${fixed(p.firstDivergence, 0)}${divPos !== null && l ? ` (context position ${divPos})` : ''}`],
    ['tokens', `${p.reference.tokens.length} reference · ${p.candidate.tokens.length} candidate`],
  ];
  const errorBox = p.verdict === 'errored' ? `<pre class="error">${rich(p.reason, true)}</pre>` : `<p class="reason"><b>Reason:</b> ${rich(p.reason, true)}</p>`;
  return `<section class="card prompt v-${esc(p.verdict)}" id="prompt-${esc(String(p.index))}">
<div class="prompt-head"><h2>Prompt ${esc(String(p.index))}</h2>${badge(p.verdict)}</div>
<pre class="prompt-text">${rich(p.prompt, true)}</pre>
${errorBox}
${kv(facts)}
${l ? statsTable(l) : ''}
${chart}
<h4>Generated tokens</h4>
<div class="side-by-side"><div><div class="col-head">reference</div><div class="tokens ref">${tokenSpans('ref', p.reference, p.firstDivergence)}</div></div><div><div class="col-head">candidate</div><div class="tokens cand">${tokenSpans('cand', p.candidate, p.firstDivergence)}</div></div></div>
<details class="diff-box" open><summary>Token diff <span class="legend-inline"><del class="tok removed">reference only</del> <ins class="tok added">candidate only</ins></span></summary><div class="tokens diff">${diffView(p.diff)}</div></details>
<details class="texts"><summary>Generated text</summary><div class="side-by-side"><pre class="gen ref">${rich(p.reference.text, true)}</pre><pre class="gen cand">${rich(p.candidate.text, true)}</pre></div></details>
${triage}
</section>`;
}

export const CSS = `
:root{--fg:#1f2328;--muted:#59636e;--bg:#f3f5f8;--card:#fff;--border:#d8dee4;--ref:#8c959f;--cand:#0969da;--match:#1a7f37;--tolerated:#9a6700;--mismatch:#cf222e;--errored:#8250df}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:0 0 10px}h2.sub{margin-top:14px}h3{font-size:14px;margin:16px 0 8px}h4{font-size:13px;margin:16px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code,pre,.tok,.command{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono","DejaVu Sans Mono",monospace;font-size:12.5px}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
code{overflow-wrap:break-word}
.title-row{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
.model-name{color:var(--cand)}
.subtitle{color:var(--muted);margin:4px 0 14px}
.card{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:14px 18px;margin:0 0 16px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.grid .card{margin:0}
.page-head>.card{margin-top:16px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 12px;margin:0}
.kv dt{color:var(--muted)}.kv dd{margin:0;overflow-wrap:break-word;min-width:0}
.muted,.na{color:var(--muted)}
.na{font-style:italic}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{border:1px solid var(--border);border-radius:12px;padding:1px 9px;background:#f6f8fa}
.command{background:#f6f8fa;border:1px solid var(--border);border-radius:6px;padding:6px 10px}
.banner{border-radius:8px;padding:10px 14px;margin:0 0 14px;font-size:15px}
.banner.status-interrupted{background:#fff8c5;border:1px solid #d4a72c}
.banner.status-failed{background:#ffebe9;border:1px solid #ff8182}
.gate{font-weight:700;border-radius:6px;padding:2px 10px;color:#fff;letter-spacing:.05em}
.gate.pass{background:var(--match)}.gate.fail{background:var(--mismatch)}
.badge{display:inline-block;border-radius:10px;padding:0 9px;font-size:12px;font-weight:600;color:#fff;line-height:20px}
.badge.v-match{background:var(--match)}.badge.v-tolerated{background:var(--tolerated)}.badge.v-mismatch{background:var(--mismatch)}.badge.v-errored{background:var(--errored)}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:10px}
.tile{flex:1;min-width:120px;border-radius:8px;padding:8px 14px;border:1px solid var(--border);border-left-width:5px}
.tile .n{font-size:26px;font-weight:700;line-height:1.1}.tile .l{color:var(--muted)}
.tile.v-match{border-left-color:var(--match)}.tile.v-tolerated{border-left-color:var(--tolerated)}.tile.v-mismatch{border-left-color:var(--mismatch)}.tile.v-errored{border-left-color:var(--errored)}
.verdict-bar{display:block;height:14px;border-radius:4px;overflow:hidden;margin:6px 0 12px}
.seg.v-match{fill:var(--match)}.seg.v-tolerated{fill:var(--tolerated)}.seg.v-mismatch{fill:var(--mismatch)}.seg.v-errored{fill:var(--errored)}.seg.empty{fill:#eaeef2}
.gate-line{display:flex;gap:10px;align-items:center}
.reasons{margin:8px 0 0;padding-left:20px}
.table{border-collapse:collapse;width:100%;margin:6px 0}
.table th,.table td{border-bottom:1px solid #eaeef2;padding:4px 8px;text-align:left;vertical-align:top}
.table thead th{color:var(--muted);font-weight:600;border-bottom:1px solid var(--border)}
.table td.num{text-align:right;font-variant-numeric:tabular-nums}
.table td.clip{max-width:520px;overflow-wrap:anywhere}
.table .good{color:var(--match)}.table .bad{color:var(--mismatch);font-weight:600}.table td.ratio{white-space:nowrap}.table .same{color:var(--muted)}
.speed-table{max-width:760px}.speed-table tbody th{white-space:nowrap}.speed-table .pipe{font-weight:400;font-size:12px}
.speedup{font-size:15px;margin-bottom:6px}.speedup b{font-size:20px;color:var(--cand)}.speedup.no-difference b{color:var(--muted)}.speedup .ci{color:var(--muted);font-size:13px;margin-left:6px}
figure{margin:12px 0}
figcaption{color:var(--muted);font-size:12px}
svg.chart{display:block;max-width:760px;height:auto;font-size:11px}
svg text{fill:var(--fg)}
.plot-bg{fill:#fbfcfd}
.gridline{stroke:#e6eaef;stroke-width:1}
.axis,.xtick{stroke:#8c959f;stroke-width:1}
.tick,.band-label{fill:var(--muted)}
.axis-label{fill:var(--muted);font-size:11.5px}
.legend{font-size:12px}
.series{fill:none;stroke-width:2;stroke-linejoin:round}
.series.ref,.legend-swatch.ref{stroke:var(--ref)}.series.cand,.legend-swatch.cand{stroke:var(--cand)}
.legend-swatch{stroke-width:3}
.dot.ref{fill:var(--ref)}.dot.cand{fill:var(--cand)}
.band.prefill{fill:#eef3fb}
.hline.atol{stroke:var(--tolerated);stroke-dasharray:5 4}.hline-label{fill:var(--tolerated)}
.marker.divergence-marker{stroke:var(--mismatch);stroke-width:1.5;stroke-dasharray:4 3}
.marker-label.divergence-marker{fill:var(--mismatch);font-weight:600}
.nodata{fill:var(--muted)}
.bar.ref,.legend-box.ref{fill:var(--ref)}.bar.cand,.legend-box.cand{fill:var(--cand)}
.bar-label{font-size:12.5px;font-weight:600}.bar-unit{fill:var(--muted)}.bar-value{font-size:11.5px}
.bar-ratio{font-size:12.5px;font-weight:600}.bar-ratio.better{fill:var(--match)}.bar-ratio.worse{fill:var(--mismatch)}.bar-ratio.same{fill:var(--muted)}.bar-ci{font-size:11px;fill:var(--muted)}
.row-sep{stroke:#eaeef2}
.prompt{border-left:5px solid var(--border)}
.prompt.v-match{border-left-color:var(--match)}.prompt.v-tolerated{border-left-color:var(--tolerated)}.prompt.v-mismatch{border-left-color:var(--mismatch)}.prompt.v-errored{border-left-color:var(--errored)}
.prompt-head{display:flex;align-items:center;gap:10px;margin-bottom:8px}.prompt-head h2{margin:0}
.prompt-text{background:#f6f8fa;border:1px solid var(--border);border-radius:6px;padding:8px 12px;margin-bottom:8px;font-size:13px}
.reason{margin:6px 0}
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:8px 12px;margin:6px 0}
.stats{max-width:760px}
.side-by-side{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.col-head{font-weight:600;color:var(--muted);margin-bottom:4px}
.tokens{line-height:1.9;border:1px solid var(--border);border-radius:6px;padding:6px 8px;background:#fcfcfd;overflow-wrap:anywhere}
.tok{white-space:pre-wrap;border:1px solid #d8dee4;border-radius:3px;padding:0 2px;margin:0 1px;background:#fff}
.tok.empty::after{content:"∅";color:var(--muted)}
.tok.after{opacity:.55}
.tok.divergent{background:#ffebe9;border-color:var(--mismatch);box-shadow:0 0 0 1px var(--mismatch);font-weight:700;opacity:1}
.tok.removed{background:#ffebe9;border-color:#ff8182;text-decoration:line-through}
.tok.added{background:#dafbe1;border-color:#4ac26b;text-decoration:none}
.ctl{color:#fff;background:#6e7781;border-radius:2px;padding:0 2px;font-size:.85em}
details{margin-top:10px}summary{cursor:pointer;font-weight:600;color:var(--muted)}
.legend-inline{font-weight:400;margin-left:8px}
.gen{background:#f6f8fa;border:1px solid var(--border);border-radius:6px;padding:6px 10px}
.blame{margin:6px 0 0}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media (max-width:700px){.side-by-side{grid-template-columns:1fr}}
@media print{body{background:#fff}.card{break-inside:avoid}}
`;

export function renderCompareHtml(report: CompareReport): string {
  const r = report;
  const name = r.model.dir.split(/[\\/]+/).filter(Boolean).pop() ?? r.model.dir;
  const prompts = r.prompts.length ? r.prompts.map((p) => promptSection(p, r)).join('\n') : '';
  return `${pageHead(`${esc(`fusegen compare · ${name} · ${r.createdAt}`)}`, `fusegen ${esc(r.environment.fusegen)}`, `${CSS}`)}
<body>
<main>
${headerSection(r)}
${summarySection(r)}
${speedSection(r)}
<div class="prompts" id="prompts">
${prompts}
</div>
<footer>${esc(r.schema)} · written ${esc(r.createdAt)} · fusegen ${esc(r.environment.fusegen)}</footer>
</main>
</body>
</html>
`;
}

/** The document head every report page shares: offline-only CSP, viewport, title, inline CSS. */
export function pageHead(title: string, generator: string, css: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="${generator}">
<title>${title}</title>
<style>${css}</style>
</head>`;
}
