/**
 * The bench report as one self-contained HTML page, in the style of the compare page:
 * inline CSS, inline SVG charts drawn here (html.ts's helpers), no script, no external
 * resource. Every string from the report goes through `esc`/`rich`.
 */
import { byTime, pointName, type BenchGate, type BenchReport, type BenchRow } from './bench-report.js';
import { ratioText } from './speed-stats.js';
import { clip, CSS, esc, finite, fixed, kv, lineChart, NA, plain, rich, type Series, pageHead } from './html.js';

/** Series colours beyond html.ts's ref/cand pair, for charts with many lines. */
export const PALETTE = ['#0969da', '#cf222e', '#1a7f37', '#8250df', '#9a6700', '#bf3989', '#0a7ea4', '#6e7781', '#fb8500', '#3d5a80'];

export const EXTRA_CSS = PALETTE.map((c, i) => `.series.c${i},.legend-swatch.c${i}{stroke:${c}}.dot.c${i}{fill:${c}}`).join('\n') + `
.marker.cliff{stroke:var(--mismatch);stroke-width:1.2;stroke-dasharray:3 3}
.marker-label.cliff{fill:var(--mismatch);font-weight:600}
.bar.median{fill:var(--cand)}.bar.p90{fill:#9ec5fe}.legend-box.median{fill:var(--cand)}.legend-box.p90{fill:#9ec5fe}
.rows-table{font-size:12.5px}.rows-table td,.rows-table th{white-space:nowrap}
.table-wrap{overflow-x:auto}
.charts-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:8px 16px}
.charts-grid figure{margin:6px 0}
.page-head .grid{margin-bottom:16px}
`;

export function seriesClass(i: number): string {
  return `c${i % PALETTE.length}`;
}

function rowLabel(r: BenchRow): string {
  return `${r.pipeline} b${r.batch} p${r.promptLength}`;
}

/** Horizontal grouped bars: time per output token, median and p90, one group per row. */
function tpotBars(rows: BenchRow[]): string {
  const W = 760;
  const rowH = 40;
  const top = 30;
  const labelW = 170;
  const barMax = W - labelW - 90;
  const H = top + Math.max(1, rows.length) * rowH + 6;
  const max = Math.max(0, ...rows.flatMap((r) => [r.tpotMs.median, r.tpotMs.p90].filter(finite)));
  const r1 = (x: number) => (Math.round(x * 10) / 10).toString();
  const parts: string[] = [];
  parts.push(`<svg class="chart tpot-bars" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="time per output token" xmlns="http://www.w3.org/2000/svg">`);
  parts.push('<title>Time per output token, median and p90</title>');
  parts.push(`<rect class="legend-box median" x="${labelW}" y="8" width="12" height="12"/><text class="legend" x="${labelW + 18}" y="18">median (ms)</text>`);
  parts.push(`<rect class="legend-box p90" x="${labelW + 120}" y="8" width="12" height="12"/><text class="legend" x="${labelW + 138}" y="18">p90 (ms)</text>`);
  if (rows.length === 0) parts.push(`<text class="nodata" x="${W / 2}" y="${top + 20}" text-anchor="middle">no rows</text>`);
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    parts.push(`<text class="bar-label" x="${labelW - 10}" y="${y + 22}" text-anchor="end">${esc(clip(rowLabel(row), 26))}</text>`);
    for (const [k, v, dy] of [['median', row.tpotMs.median, 2], ['p90', row.tpotMs.p90, 19]] as const) {
      const bw = finite(v) && max > 0 ? Math.max(1, (v / max) * barMax) : 0;
      parts.push(`<rect class="bar ${k}" x="${labelW}" y="${y + dy}" width="${r1(bw)}" height="15" rx="2"><title>${esc(`${rowLabel(row)} ${k}: ${plain(v, 3)} ms`)}</title></rect>`);
      parts.push(`<text class="bar-value" x="${r1(labelW + bw + 6)}" y="${y + dy + 12}">${esc(plain(v, 3))}</text>`);
    }
  });
  parts.push('</svg>');
  return parts.join('');
}

function throughputChart(rows: BenchRow[]): string {
  const groups = new Map<string, BenchRow[]>();
  for (const r of rows) {
    const key = `${r.pipeline} · prompt ${r.promptLength}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const series: Series[] = [...groups].map(([name, rs], i) => ({
    name,
    cls: seriesClass(i),
    points: rs.map((r): [number, number] => [r.batch, r.decodeTokensPerSec]).sort((a, b) => a[0] - b[0]),
  }));
  return lineChart({ cls: 'throughput', title: 'Decode tokens/s against batch size', xLabel: 'batch size', yLabel: 'decode tokens/s', series, integerX: true });
}

function positionChart(r: BenchRow, i: number): string {
  const cliffs = r.outlierPositions.filter(finite);
  return `<figure>${lineChart({
    cls: 'position-chart',
    title: `Per-token latency against context position: ${rowLabel(r)}`,
    xLabel: 'context position',
    yLabel: 'ms per token (median)',
    series: [{ name: rowLabel(r), cls: seriesClass(i), points: r.perPosition }],
    markers: cliffs.map((p) => ({ x: p, label: cliffs.length <= 4 ? `cliff ${p}` : '', cls: 'cliff' })),
    integerX: true,
  })}<figcaption>${esc(rowLabel(r))}: ${cliffs.length ? `cliffs (over 3× the median) at ${esc(cliffs.join(', '))}` : 'no cliffs'}</figcaption></figure>`;
}

function rowsTable(rows: BenchRow[]): string {
  if (rows.length === 0) return '<p class="muted">No rows: the run measured nothing.</p>';
  const versus = rows.some((r) => r.versus);
  const head = ['pipeline', 'batch', 'prompt', 'new tokens', 'load ms', 'TTFT ms (median)', 'TTFT p90', 'TPOT ms (median)', 'TPOT p90', 'TPOT p99', ...(versus ? [`TPOT speedup vs ${rows.find((r) => r.versus)!.versus!.pipeline}`] : []), 'e2e ms (median)', 'decode tok/s', 'prefill tok/s', 'GB/s', 'TFLOPS', 'peak RSS MB', 'execution providers', 'cliffs'];
  const versusCell = (r: BenchRow) => (versus ? `<td class="ratio${r.versus?.tpotSpeedup.significant ? '' : ' same'}">${r.versus ? esc(ratioText(r.versus.tpotSpeedup, '×', '–')) : '–'}</td>` : '');
  const body = rows
    .map(
      (r) =>
        `<tr><td>${rich(r.pipeline)}</td><td class="num">${fixed(r.batch, 0)}</td><td class="num">${fixed(r.promptLength, 0)}</td><td class="num">${fixed(r.maxNewTokens, 0)}</td><td class="num">${fixed(r.loadMs, 0)}</td><td class="num">${fixed(r.ttftMs?.median, 2)}</td><td class="num">${fixed(r.ttftMs?.p90, 2)}</td><td class="num">${fixed(r.tpotMs?.median, 3)}</td><td class="num">${fixed(r.tpotMs?.p90, 3)}</td><td class="num">${fixed(r.tpotMs?.p99, 3)}</td>${versusCell(r)}<td class="num">${fixed(r.e2eMs?.median, 1)}</td><td class="num">${fixed(r.decodeTokensPerSec, 1)}</td><td class="num">${fixed(r.prefillTokensPerSec, 1)}</td><td class="num">${fixed(r.bandwidthGBps, 2)}</td><td class="num">${fixed(r.tflops, 3)}</td><td class="num">${fixed(r.peakRssMB, 0)}</td><td>${(r.executionProviders ?? []).map((e) => rich(e)).join(', ') || NA}</td><td>${r.outlierPositions?.length ? esc(r.outlierPositions.join(', ')) : '–'}</td></tr>`,
    )
    .join('');
  return `<div class="table-wrap"><table class="table rows-table"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table></div>`;
}

/** `--baseline`: each row's speed against the baseline's, "no significant difference" where the interval includes 1. */
function gateSection(g: BenchGate): string {
  const rows = g.baseline.rows
    .map(
      (b) =>
        `<tr class="${b.fails ? 'fails' : 'holds'}"><td>${esc(pointName(b))}</td><td class="num">${fixed(b.baselineTpotMs, 3)}</td><td class="num">${fixed(b.tpotMs, 3)}</td><td class="ratio${b.speedRatio.significant ? '' : ' same'}">${esc(ratioText(b.speedRatio, '×', '–'))}${b.speedRatio.fixed ? ' <span class="muted">(baseline median held fixed: it kept no samples)</span>' : ''}</td><td class="${b.fails ? 'bad' : 'good'}">${b.fails ? `${fixed(b.regressionPct, 1)}% slower: fails` : b.significant ? `${fixed(b.regressionPct, 1)}% slower, within the allowed` : b.speedRatio.significant ? 'faster' : 'no significant difference'}</td></tr>`,
    )
    .join('');
  const pass = g.exitCode === 0;
  return `<section class="card" id="gate"><h2>Against the baseline <span class="gate ${pass ? 'pass' : 'fail'}">${pass ? 'PASS' : 'FAIL'}</span></h2>
<p>Baseline <code>${rich(g.baseline.file)}</code>. A row fails only on a significant slowdown (the whole 95% interval of the speed ratio below 1) of more than ${fixed(g.baseline.maxRegressionPct, 1)}%. The speed ratio is the baseline's median time per output token over this run's (above 1: this run faster), the median of bootstrap ratios that resample both runs' runs and steps.</p>
${g.reasons.length ? `<ul class="reasons">${g.reasons.map((x) => `<li>${rich(x)}</li>`).join('')}</ul>` : ''}
<div class="table-wrap"><table class="table rows-table baseline"><thead><tr><th>point</th><th>baseline TPOT ms</th><th>TPOT ms</th><th>speed against the baseline</th><th>verdict</th></tr></thead><tbody>${rows}</tbody></table></div>
${g.baseline.unmatched.length ? `<p class="muted">Not in the baseline: ${esc(g.baseline.unmatched.join(', '))}</p>` : ''}
</section>`;
}

const TOP = 12;

/** A table of the largest items of one step's profile, with each one's share of the step; the first `textCols` cells are names. */
function shareTable(caption: string, head: string[], textCols: number, rows: Array<{ cells: string[]; us: number }>, totalUs: number): string {
  const body = rows
    .slice(0, TOP)
    .map((r) => `<tr>${r.cells.map((c, i) => `<td${i >= textCols ? ' class="num"' : ''}>${c}</td>`).join('')}<td class="num">${fixed(totalUs > 0 ? (100 * r.us) / totalUs : NaN, 1)}</td></tr>`)
    .join('');
  return `<figure><div class="table-wrap"><table class="table rows-table"><thead><tr>${[...head, 'share %'].map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table></div><figcaption>${caption}</figcaption></figure>`;
}

/** Where a row's decode step goes: ORT per op (--profile; by GPU and by host time), the WGSL engine per kernel. */
function profileSection(r: BenchRow): string {
  const parts: string[] = [];
  const p = r.opProfile?.decode;
  if (p) {
    const summary = `${rowLabel(r)}: mean decode step over ${p.steps} steps, ${plain(p.wallUs / 1e3, 3)} ms wall; ops ${plain(p.hostUs / 1e3, 3)} ms on the host${p.gpuUs > 0 ? `, ${plain(p.gpuUs / 1e3, 3)} ms on the GPU` : ''}. Per node role (layers summed), per step`;
    for (const key of p.gpuUs > 0 ? (['gpuUs', 'hostUs'] as const) : (['hostUs'] as const)) {
      parts.push(
        shareTable(
          esc(`${summary}, largest ${key === 'gpuUs' ? 'GPU' : 'host'} time first.`),
          ['node role', 'op', 'calls', 'host us', 'GPU us'],
          2,
          byTime(p.ops, key).map((t) => ({ cells: [rich(t.role), rich(t.op), fixed(t.calls, 0), fixed(t.hostUs, 1), t.gpuUs > 0 ? fixed(t.gpuUs, 1) : '–'], us: t[key] })),
          key === 'gpuUs' ? p.gpuUs : p.hostUs,
        ),
      );
    }
  }
  if (r.kernelProfile?.length) {
    parts.push(
      shareTable(
        esc(`${rowLabel(r)}: one decode step's kernels, each dispatch timed in a pass of its own (the sum overstates the step's ${plain((r.stepGpuUs ?? NaN) / 1e3, 3)} ms); marginal: the step's time less the step's without the kernel.`),
        ['kernel', 'dispatches', 'total us', 'marginal us'],
        1,
        r.kernelProfile.map((k) => ({ cells: [rich(k.kernel), fixed(k.dispatches, 0), fixed(k.totalUs, 1), fixed(k.marginalUs, 1)], us: k.totalUs })),
        r.kernelProfile.reduce((a, k) => a + k.totalUs, 0),
      ),
    );
  }
  const t = r.llamaCppTimings;
  if (t) {
    const where = t.backend === 'vulkan' ? `vulkan on ${t.devices.join(', ')}` : 'cpu';
    const body = (
      [
        ['prompt step', t.prefill],
        ['decode steps', t.decode],
      ] as const
    )
      .map(([phase, p]) => `<tr><td>${esc(phase)}</td><td class="num">${fixed(p.wallMs, 2)}</td><td class="num">${fixed(p.promptEvalMs, 2)}</td><td class="num">${fixed(p.promptEvalTokens, 0)}</td><td class="num">${fixed(p.evalMs, 2)}</td><td class="num">${fixed(p.evalRuns, 0)}</td><td class="num">${fixed(p.graphsReused, 0)}</td><td class="num">${fixed(p.wallMs > 0 ? (100 * (p.promptEvalMs + p.evalMs)) / p.wallMs : NaN, 1)}</td></tr>`)
      .join('');
    parts.push(
      `<figure><div class="table-wrap"><table class="table rows-table"><thead><tr>${['phase', 'wall ms', 'prompt eval ms', 'prompt eval tokens', 'eval ms', 'eval runs', 'graphs reused', 'llama.cpp % of wall'].map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table></div><figcaption>${esc(
        `${rowLabel(r)}: llama.cpp's own counters (llama_perf_context, ${where}) for one run after the measured ones, beside fusegen's wall time of each phase; prompt eval counts decode calls of several tokens (batched decode steps too), eval calls of one; the rest of the wall time is node-llama-cpp's and fusegen's loop.`,
      )}</figcaption></figure>`,
    );
  }
  return parts.join('\n');
}

export function renderBenchHtml(report: BenchReport): string {
  const r = report;
  const name = r.model.dir.split(/[\\/]+/).filter(Boolean).pop() ?? r.model.dir;
  const env = Object.entries((r.environment ?? {}) as unknown as Record<string, unknown>).map(([k, v]): [string, string] => [k, v === null || v === undefined ? NA : rich(typeof v === 'string' ? v : JSON.stringify(v))]);
  const banner = r.status === 'complete' ? '' : `<div class="banner status-interrupted" role="alert"><strong>Run interrupted</strong>: this report covers the ${r.rows.length} row${r.rows.length === 1 ? '' : 's'} that finished.</div>`;
  return `${pageHead(`${esc(`fusegen bench · ${name} · ${r.createdAt}`)}`, `fusegen bench`, `${CSS}${EXTRA_CSS}`)}
<body>
<main>
<header class="page-head">
<div class="title-row"><h1>fusegen bench <span class="model-name">${rich(name)}</span></h1></div>
<p class="subtitle">${esc(r.model.modelType)} · ${esc(r.dtype)} on ${esc(r.device)} · ${esc(r.createdAt)}</p>
${banner}
<div class="grid">
<section class="card"><h2>Model</h2>${kv([
    ['directory', `<code>${rich(r.model.dir)}</code>`],
    ['type', rich(r.model.modelType)],
    ['parameters', finite(r.model.parameters) && r.model.parameters > 0 ? `${(r.model.parameters / 1e6).toFixed(2)} M` : NA],
    ['device', rich(r.device)],
    ['dtype', rich(r.dtype)],
  ])}</section>
<section class="card env"><h2>Environment</h2>${env.length ? kv(env) : `<p class="muted">not recorded</p>`}</section>
</div>
</header>
<section class="card" id="rows"><h2>Rows</h2>${rowsTable(r.rows)}${r.rows.some((x) => x.versus) ? `<p class="muted stats-note">TPOT speedup: the first pipeline's median time per output token over the row's (above 1: the row faster), the median of bootstrap ratios that resample the runs and their decode steps, with the 95% interval; where it includes 1, no significant difference.</p>` : ''}</section>
${r.gate ? gateSection(r.gate) : ''}
<section class="card" id="charts"><h2>Throughput</h2>
<figure>${throughputChart(r.rows)}<figcaption>Decode tokens per second (all sequences of the batch) against batch size; one line per pipeline and prompt length.</figcaption></figure>
<h2 class="sub">Time per output token</h2>
<figure>${tpotBars(r.rows)}<figcaption>Median and p90 decode-step latency of each row.</figcaption></figure>
</section>
${r.rows.some((x) => x.opProfile || x.kernelProfile?.length || x.llamaCppTimings) ? `<section class="card" id="profiles"><h2>Where the time goes</h2>\n${r.rows.map(profileSection).join('\n')}\n</section>` : ''}
<section class="card" id="positions"><h2>Per-token latency against context position</h2>
<div class="charts-grid">${r.rows.map(positionChart).join('\n')}</div>
</section>
<footer>${esc(r.schema)} · written ${esc(r.createdAt)}</footer>
</main>
</body>
</html>
`;
}
