/**
 * The `bench --url` report as one self-contained HTML page, in the style of the bench page
 * (bench-html.ts): inline CSS, inline SVG charts, no script, no external resource. Every string
 * from the report goes through `esc`/`rich`.
 */
import { EXTRA_CSS, seriesClass } from './bench-html.js';
import { CSS, esc, finite, fixed, kv, lineChart, NA, rich, type Series, pageHead } from './html.js';
import { servePointName, type ServeBenchReport, type ServePoint } from './serve-bench-report.js';

/** A point's place on a chart's x axis: its concurrency (synchronous is 1) or its request rate; none for rate inf. */
function loadX(p: ServePoint): number | undefined {
  const l = p.load;
  if (l.mode === 'synchronous') return 1;
  if (l.mode === 'concurrency') return l.concurrency;
  return l.requestRate === 'inf' ? undefined : l.requestRate;
}

/** Lines of one figure against load: one per sweep kind (concurrency or rate) and prompt length. */
function seriesOf(points: ServePoint[], pick: (p: ServePoint) => number, kind: 'concurrency' | 'rate'): Series[] {
  const groups = new Map<string, Array<[number, number]>>();
  for (const p of points) {
    const isConc = p.load.mode !== 'rate';
    if ((kind === 'concurrency') !== isConc) continue;
    const x = loadX(p);
    const y = pick(p);
    if (x === undefined || !finite(y)) continue;
    const key = p.promptLength !== undefined ? `prompt ${p.promptLength}` : 'all prompts';
    groups.set(key, [...(groups.get(key) ?? []), [x, y]]);
  }
  return [...groups].map(([name, pts], i) => ({ name, cls: seriesClass(i), points: pts.sort((a, b) => a[0] - b[0]) }));
}

function charts(points: ServePoint[]): string {
  const out: string[] = [];
  for (const kind of ['concurrency', 'rate'] as const) {
    const xLabel = kind === 'concurrency' ? 'requests in flight (concurrency)' : 'request rate (requests/s)';
    const figs: Array<[string, string, (p: ServePoint) => number]> = [
      ['Output tokens/s', 'output tokens/s', (p) => p.outputThroughput],
      ['Median time to first token', 'ms', (p) => p.ttftMs.median],
      ['Median time per output token', 'ms', (p) => p.tpotMs.median],
      ['p99 end-to-end latency', 'ms', (p) => p.e2eMs.p99],
    ];
    const drawn = figs
      .map(([title, yLabel, pick]) => [title, seriesOf(points, pick, kind), yLabel] as const)
      .filter(([, s]) => s.some((x) => x.points.length > 1))
      .map(([title, series, yLabel]) => `<figure>${lineChart({ cls: `serve ${kind}`, title: `${title} against ${kind}`, xLabel, yLabel, series, integerX: kind === 'concurrency' })}<figcaption>${esc(`${title} against ${kind === 'concurrency' ? 'concurrency' : 'the request rate'}`)}</figcaption></figure>`);
    out.push(...drawn);
  }
  return out.length ? `<div class="charts-grid">${out.join('\n')}</div>` : '<p class="muted">One point per sweep: no chart.</p>';
}

function statsCells(s: ServePoint['ttftMs'], digits: number): string {
  return [s.mean, s.median, s.p90, s.p99].map((v) => `<td class="num">${fixed(v, digits)}</td>`).join('');
}

function pointsTable(r: ServeBenchReport): string {
  if (r.points.length === 0) return '<p class="muted">No points: the run measured nothing.</p>';
  const goodput = r.settings.slo !== undefined;
  const statHead = (name: string) => ['mean', 'median', 'p90', 'p99'].map((s) => `<th>${esc(`${name} ${s}`)}</th>`).join('');
  const head = `<tr><th>point</th><th>stopped by</th><th>duration s</th><th>completed</th><th>failed</th><th>errors</th><th>peak in flight</th><th>req/s</th>${goodput ? '<th>goodput req/s</th>' : ''}<th>output tok/s</th><th>total tok/s</th><th>input tokens</th><th>output tokens</th><th>server's output tokens</th>${statHead('TTFT ms')}${statHead('TPOT ms')}${statHead('ITL ms')}${statHead('E2E ms')}</tr>`;
  const body = r.points
    .map((p) => {
      const errors = Object.entries(p.errors).map(([k, n]) => `<span title="${esc(p.errorExamples[k] ?? '')}">${esc(`${k} ${n}`)}</span>`).join(', ') || '–';
      const server = p.serverOutputTokens === null ? NA : `${fixed(p.serverOutputTokens, 0)}${p.tokenCountMismatches ? ` <span class="bad">(${p.tokenCountMismatches} requests differ)</span>` : ''}`;
      return `<tr><td>${esc(servePointName(p))}</td><td>${esc(p.stoppedBy.replace('_', ' '))}</td><td class="num">${fixed(p.durationS, 2)}</td><td class="num">${fixed(p.completed, 0)}</td><td class="num">${fixed(p.failed, 0)}</td><td>${errors}</td><td class="num">${fixed(p.peakConcurrency, 0)}</td><td class="num">${fixed(p.requestThroughput, 2)}</td>${goodput ? `<td class="num">${fixed(p.goodput, 2)}</td>` : ''}<td class="num">${fixed(p.outputThroughput, 1)}</td><td class="num">${fixed(p.totalTokenThroughput, 1)}</td><td class="num">${fixed(p.inputTokens, 0)}</td><td class="num">${fixed(p.outputTokens, 0)}</td><td class="num">${server}</td>${statsCells(p.ttftMs, 2)}${statsCells(p.tpotMs, 2)}${statsCells(p.itlMs, 2)}${statsCells(p.e2eMs, 1)}</tr>`;
    })
    .join('');
  return `<div class="table-wrap"><table class="table rows-table points"><thead>${head}</thead><tbody>${body}</tbody></table></div>`;
}

export function renderServeBenchHtml(report: ServeBenchReport): string {
  const r = report;
  const s = r.settings;
  const env = Object.entries((r.environment ?? {}) as unknown as Record<string, unknown>).map(([k, v]): [string, string] => [k, v === null || v === undefined ? NA : rich(typeof v === 'string' ? v : JSON.stringify(v))]);
  const banner = r.status === 'complete' ? '' : `<div class="banner status-interrupted" role="alert"><strong>Run interrupted</strong>: this report covers the ${r.points.length} point${r.points.length === 1 ? '' : 's'} that finished.</div>`;
  const slo = s.slo ? [s.slo.ttftMs !== undefined ? `TTFT ≤ ${s.slo.ttftMs} ms` : '', s.slo.tpotMs !== undefined ? `TPOT ≤ ${s.slo.tpotMs} ms` : '', s.slo.e2eMs !== undefined ? `E2E ≤ ${s.slo.e2eMs} ms` : ''].filter(Boolean).join(', ') : '';
  return `${pageHead(esc(`fusegen bench --url · ${r.target.model} · ${r.createdAt}`), 'fusegen bench --url', `${CSS}${EXTRA_CSS}`)}
<body>
<main>
<header class="page-head">
<div class="title-row"><h1>fusegen bench --url <span class="model-name">${rich(r.target.model)}</span></h1></div>
<p class="subtitle">${esc(r.target.url)} · ${esc(r.createdAt)}</p>
${banner}
<div class="grid">
<section class="card"><h2>Server and load</h2>${kv([
    ['URL', `<code>${rich(r.target.url)}</code>`],
    ['model', rich(r.target.model)],
    ['requests per point', `at most ${fixed(s.numPrompts, 0)}, for at most ${fixed(s.maxSeconds, 1)} s`],
    ['request timeout', `${fixed(s.timeoutS, 1)} s`],
    ['max tokens', `${fixed(s.maxTokens, 0)}${s.ignoreEos ? ' (ignore_eos)' : ''}`],
    ['prompts', s.prompts === 'file' ? `<code>${rich(s.promptsFile ?? '')}</code>` : s.prompts === 'fixed-length' ? 'fixed lengths in tokens' : "the seed's compare prompts"],
    ['output tokens counted by', s.tokenCounting === 'tokenizer' ? `the tokenizer of <code>${rich(s.tokenizer ?? '')}</code>` : "the server's usage"],
    ['seed', fixed(s.seed, 0)],
    ...(slo ? [['goodput SLO', esc(slo)] as [string, string]] : []),
  ])}</section>
<section class="card env"><h2>Environment</h2>${env.length ? kv(env) : `<p class="muted">not recorded</p>`}</section>
</div>
</header>
<section class="card" id="points"><h2>Points</h2>${pointsTable(r)}<p class="muted stats-note">As vllm bench serve defines them: TTFT from the send to the first chunk with text; TPOT (e2e - TTFT) / (output tokens - 1) per request of more than one token; ITL every gap between consecutive text chunks; E2E from the send to the last chunk. Throughputs over the point's duration, from its first send to its last answer.</p></section>
<section class="card" id="charts"><h2>Against load</h2>${charts(r.points)}</section>
<footer>${esc(r.schema)} · written ${esc(r.createdAt)}</footer>
</main>
</body>
</html>
`;
}
