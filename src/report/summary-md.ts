/**
 * A Markdown summary of a compare or bench run, for a CI job's page (`$GITHUB_STEP_SUMMARY`,
 * a merge-request note, `--summary_md FILE`): the gate's verdict first, then the verdicts, the
 * speedup with its interval, and what regressed, so a pull request shows the verdict without
 * opening the HTML. Built from the same report object as the JSON and HTML, nothing else.
 *
 * Every string from the report (prompts are user text; model paths, error messages) goes through
 * `md`: HTML-escaped as the HTML report escapes it (controls, bidi overrides and lone surrogates
 * made visible, newlines shown as `\n`, so a cell stays one line), then every character Markdown
 * or GitHub would read as markup in a table cell backslash-escaped (`|` ends a cell, `*` `_` `~`
 * emphasis, `[` `]` links and images, backticks code, `$` math, `\` itself). No report text goes
 * into a code span, where those escapes would show. Numbers that are not finite show as "n/a".
 */
import { pointName, type BenchReport, type BenchRow } from './bench-report.js';
import { comparedLine, referenceLine, servedLine, type CompareReport, type PipelineSpeed, type PromptResult } from './compare-report.js';
import { clip, esc } from './html.js';
import { servePointName, type ServeBenchReport } from './serve-bench-report.js';
import { ratioText, type RatioInterval } from './speed-stats.js';

/** Report text as Markdown inline text, safe in a table cell: no markup, no HTML, one line. */
export function md(s: string): string {
  // Quotes need no entity in Markdown (esc writes them for attributes); a literal "&#39;" in the
  // text cannot be mistaken for one, its & having become &amp;.
  return esc(String(s))
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/[\\`*_[\]|~$]/g, '\\$&');
}

/** `x.toFixed(digits)`, or n/a. */
function num(x: number | null | undefined, digits: number): string {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : 'n/a';
}

/** 1234567 -> 1,234,567 (no locale: the same on every machine). */
function count(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return 'n/a';
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A ratio with its interval, in words (`1.52× (95% CI 1.41–1.63×)`, or no significant difference). */
function ratio(r: RatioInterval | undefined): string {
  return r ? md(ratioText(r, '×', '–')) : 'n/a';
}

function table(head: string[], align: Array<'l' | 'r'>, rows: string[][]): string[] {
  return [`| ${head.join(' | ')} |`, `| ${align.map((a) => (a === 'r' ? '---:' : '---')).join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/** The last path component, as the reports name a model. */
function baseName(path: string): string {
  return path.split(/[\\/]+/).filter(Boolean).pop() ?? path;
}

function gateHeading(command: string, exitCode: 0 | 1 | undefined, status: string): string {
  if (exitCode === 1) return `## ❌ fusegen ${command}: FAIL${status === 'complete' ? '' : status === 'failed' ? ' (the run failed)' : ` (${status})`}`;
  if (status !== 'complete') return `## ⚠️ fusegen ${command}: ${status}`;
  return exitCode === 0 ? `## ✅ fusegen ${command}: pass` : `## fusegen ${command}: done (no --baseline, no gate)`;
}

function statusLine(status: string, stoppedBy: string | undefined, what: string): string[] {
  if (status === 'complete') return [];
  return [`> **Run ${md(status)}**${stoppedBy ? `: ${md(stoppedBy)}` : ''}. ${what}`, ''];
}

function reportsLine(files: { json: string; html: string } | undefined): string[] {
  return files ? ['', `Reports: ${md(baseName(files.json))}, ${md(baseName(files.html))}`] : [];
}

function candidateName(s: CompareReport['settings']): string {
  if (s.remote?.candidate) return servedLine(s.remote.candidate);
  if (!s.useKernel) return "fusegen's loop on the plain graph";
  return s.kernels === 'wgsl' ? 'the WGSL engine' : 'the ORT-injected graph';
}

/** Why a prompt got its verdict, cut to one line of a table. */
function promptRow(p: PromptResult): string[] {
  return [String(p.index), p.verdict, p.firstDivergence === null ? '–' : String(p.firstDivergence), `${num(p.similarity * 100, 1)}%`, md(clip(p.reason, 160)), md(clip(p.prompt, 80))];
}

/** The compare run: gate, verdicts, speed and its interval, the baseline, and each prompt that did not match. */
export function compareSummaryMd(r: CompareReport, files?: { json: string; html: string }): string {
  const s = r.summary;
  const lines = [
    gateHeading('compare', r.gate.exitCode, r.status),
    '',
    `**${md(baseName(r.model.dir))}** (${md(r.model.modelType)}, ${count(r.model.parameters)} parameters) · ${md(r.settings.dtype)} on ${md(r.settings.device)} · candidate: ${md(candidateName(r.settings))}${r.model.candidateDir !== r.model.dir ? ` (checkpoint ${md(baseName(r.model.candidateDir))})` : ''} · reference: ${md(referenceLine(r))} · batch ${r.settings.batchSize} · ${plural(r.prompts.length, 'prompt')}`,
    '',
    ...statusLine(r.status, r.stoppedBy, `The verdicts cover the ${plural(r.prompts.length, 'prompt')} that finished.`),
    ...table(['prompts', 'match', 'tolerated', 'mismatch', 'errored'], ['r', 'r', 'r', 'r', 'r'], [[String(r.prompts.length), String(s.matches), String(s.tolerated), String(s.mismatches), String(s.errored)]]),
    '',
    comparedLine(r)
      ? `Compared (${md(r.settings.dtype)}, a side served): ${md(comparedLine(r)!)}.`
      : !r.tolerance.gate
      ? `Not gated at ${md(r.settings.dtype)}: differences are reported, never fail the run.`
      : r.tolerance.floor
        ? `Tolerance (${md(r.settings.dtype)}): each prompt within ${r.tolerance.floor.factor}× its floor (the reference checkpoint on fusegen's plain graph at ${md(r.settings.dtype)}${r.tolerance.floor.device ? ` on ${md(r.tolerance.floor.device)}` : ''}) + ${r.tolerance.floor.absolute} in the logits, ${r.tolerance.floor.factor}× + ${r.tolerance.floor.klAbsolute} in KL.`
        : `Tolerance (${md(r.settings.dtype)}): logits within atol ${r.tolerance.atol} + rtol ${r.tolerance.rtol}${r.tolerance.maxKl !== undefined ? `, KL at most ${r.tolerance.maxKl} per position` : ''}.`,
  ];
  if (r.speed) {
    const { reference: a, candidate: b } = r.speed;
    const iv = r.speed.intervals?.tpotMedian;
    lines.push('', `**Decode speedup** (median time per output token, reference over candidate): ${iv ? ratio(iv) : `${num(r.speed.decodeSpeedup, 2)}×`}`, '');
    const row = (x: PipelineSpeed) => [md(x.pipeline), num(x.ttftMs, 2), num(x.tpotMedianMs, 3), num(x.tpotP90Ms, 3), num(x.decodeTokensPerSec, 1), num(x.prefillTokensPerSec, 1)];
    lines.push(...table(['pipeline', 'TTFT ms', 'per token ms (median)', 'p90 ms', 'decode tok/s', 'prefill tok/s'], ['l', 'r', 'r', 'r', 'r', 'r'], [row(a), row(b)]));
  }
  const base = r.gate.baseline;
  if (base) {
    const slower = Number.isFinite(base.regressionPct) ? (base.regressionPct >= 0 ? `${base.regressionPct.toFixed(1)}% slower` : `${(-base.regressionPct).toFixed(1)}% faster`) : 'n/a';
    const fails = base.significant === true && base.regressionPct > base.maxRegressionPct;
    lines.push('', `**Against the baseline** (${md(base.file)}): decode speed ${ratio(base.speedRatio)}, ${slower} (${base.significant ? 'significant' : 'not significant'}); the gate fails on a significant slowdown of more than ${base.maxRegressionPct}%: **${fails ? 'regression' : 'holds'}**`);
  }
  if (r.gate.reasons.length) lines.push('', '### Why the gate failed', '', ...r.gate.reasons.map((x) => `- ${md(x)}`));
  const off = r.prompts.filter((p) => p.verdict !== 'match');
  if (off.length) {
    lines.push('', '### Prompts that did not match', '', ...table(['#', 'verdict', 'first divergence', 'similarity', 'why', 'prompt'], ['r', 'l', 'r', 'r', 'l', 'l'], off.map(promptRow)));
    const triaged = off.filter((p) => p.triage);
    if (triaged.length) lines.push('', ...triaged.map((p) => `- prompt ${p.index}, triage${p.triage!.backend ? ` on ${p.triage!.backend === 'wgsl' ? 'the WGSL engine' : 'ONNX Runtime'}` : ''}: ${md(p.triage!.blame)}`));
  } else if (r.prompts.length) lines.push('', `Every prompt matched the reference.`);
  lines.push(...reportsLine(files));
  return `${lines.join('\n')}\n`;
}

/** The bench run: gate, each point's speed and its speedup with the interval, and each regression. */
export function benchSummaryMd(r: BenchReport, files?: { json: string; html: string }): string {
  const g = r.gate;
  const baseRow = (row: BenchRow) => g?.baseline.rows.find((b) => b.pipeline === row.pipeline && b.batch === row.batch && b.promptLength === row.promptLength);
  const against = [...new Set(r.rows.flatMap((x) => (x.versus ? [x.versus.pipeline] : [])))];
  const head = ['pipeline', 'batch', 'prompt', 'TTFT ms', 'per token ms (median)', 'p90 ms', 'decode tok/s', ...(against.length ? [`speedup vs ${against.length === 1 ? md(against[0]!) : 'first pipeline'}`] : []), ...(g ? ['against the baseline'] : [])];
  const rows = r.rows.map((x) => {
    const b = baseRow(x);
    return [
      md(x.pipeline),
      String(x.batch),
      String(x.promptLength),
      num(x.ttftMs.median, 2),
      num(x.tpotMs.median, 3),
      num(x.tpotMs.p90, 3),
      num(x.decodeTokensPerSec, 1),
      ...(against.length ? [x.versus ? ratio(x.versus.tpotSpeedup) : '–'] : []),
      ...(g ? [b ? `${ratio(b.speedRatio)}${b.fails ? ' **FAIL**' : ''}` : 'not in the baseline'] : []),
    ];
  });
  const lines = [
    gateHeading('bench', g?.exitCode, r.status),
    '',
    `**${md(baseName(r.model.dir))}** (${md(r.model.modelType)}, ${count(r.model.parameters)} parameters) · ${md(r.dtype)} on ${md(r.device)} · ${plural(r.rows.length, 'point')}`,
    '',
    ...statusLine(r.status, undefined, `The table holds the ${plural(r.rows.length, 'point')} that finished.`),
  ];
  lines.push(...(r.rows.length ? table(head, ['l', 'r', 'r', 'r', 'r', 'r', 'r', ...(against.length ? (['l'] as const) : []), ...(g ? (['l'] as const) : [])], rows) : ['No point finished.']));
  if (against.length) lines.push('', 'Speedups are ratios of median time per output token with a 95% bootstrap interval over runs and steps; where the interval holds 1 they read "no significant difference".');
  if (g) {
    const failing = g.baseline.rows.filter((b) => b.fails);
    lines.push('', `**Baseline** (${md(g.baseline.file)}): the gate fails a point on a significant slowdown of more than ${g.baseline.maxRegressionPct}%.${g.baseline.unmatched.length ? ` Not in the baseline: ${md(g.baseline.unmatched.join(', '))}.` : ''}`);
    if (failing.length) {
      lines.push('', '### Regressions', '', ...table(['point', 'baseline ms', 'now ms', 'decode speed', 'slower by'], ['l', 'r', 'r', 'l', 'r'], failing.map((b) => [md(pointName(b)), num(b.baselineTpotMs, 3), num(b.tpotMs, 3), ratio(b.speedRatio), `${num(b.regressionPct, 1)}%`])));
    }
    const other = g.reasons.filter((x) => !failing.some((b) => x.startsWith(`${pointName(b)}:`)));
    if (other.length) lines.push('', '### Why the gate failed', '', ...other.map((x) => `- ${md(x)}`));
  }
  lines.push(...reportsLine(files));
  return `${lines.join('\n')}\n`;
}

/** bench --url: the server, then a row per point (throughput, the medians, the tails, goodput, failures by kind). */
export function serveBenchSummaryMd(r: ServeBenchReport, files?: { json: string; html: string }): string {
  const s = r.settings;
  const failed = r.points.reduce((a, p) => a + p.failed, 0);
  const slo = s.slo ? Object.entries(s.slo).map(([k, v]) => `${k.replace(/Ms$/, '')} ≤ ${v} ms`).join(', ') : undefined;
  const lines = [
    gateHeading('bench --url', undefined, r.status).replace('done (no --baseline, no gate)', 'load test'),
    '',
    `**${md(r.target.model)}** at ${md(r.target.url)} · ${plural(r.points.length, 'point')} · max_tokens ${s.maxTokens}${s.ignoreEos ? ' (end-of-sequence ignored)' : ''} · prompts: ${md(s.prompts)} · output tokens counted by ${s.tokenCounting === 'tokenizer' ? "the model's tokenizer" : "the server's usage"}${slo ? ` · SLO: ${md(slo)}` : ''}`,
    '',
    ...statusLine(r.status, undefined, 'The rows cover the points that finished.'),
    ...table(
      ['point', 'completed', 'failed', 'output tok/s', 'TTFT median ms', 'TPOT median ms', 'ITL p99 ms', 'E2E p99 ms', ...(slo ? ['goodput req/s'] : [])],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', ...(slo ? (['r'] as const) : [])],
      r.points.map((p) => [md(servePointName(p)), String(p.completed), String(p.failed), num(p.outputThroughput, 1), num(p.ttftMs.median, 1), num(p.tpotMs.median, 2), num(p.itlMs.p99, 1), num(p.e2eMs.p99, 0), ...(slo ? [num(p.goodput, 2)] : [])]),
    ),
  ];
  if (failed > 0) {
    lines.push('', `**${plural(failed, 'failed request')}**:`);
    for (const p of r.points.filter((x) => x.failed > 0)) lines.push(`- ${md(servePointName(p))}: ${Object.entries(p.errors).map(([k, n]) => `${md(k)} ${n}`).join(', ')}`);
  }
  lines.push(...reportsLine(files));
  return `${lines.join('\n')}\n`;
}
