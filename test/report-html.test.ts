/**
 * The compare report's schema, its JSON/HTML writer, and the HTML page itself, loaded in
 * headless Chromium (Debian's /usr/bin/chromium through playwright-core, network blocked).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openOffline } from './helpers.js';
import { COMPARE_SCHEMA, type CompareReport, type PipelineSpeed, type PromptResult } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';
import { renderCompareHtml } from '../src/report/html.js';
import { modelBasename, reportTimestamp, writeCompareReports, writeReportFiles } from '../src/report/write.js';
import { speedIntervals } from '../compare/metrics.js';
import { bootstrapRatio, mulberry32, type RunSamples } from '../src/report/speed-stats.js';


// Hostile strings: markup, quotes, NUL, a lone surrogate, SVG breakers, control characters.
const XSS = '<script>window.__pwned=1</script>';
const PROMPTS = [
  'DeepSpeed is a machine learning framework',
  `<script>alert(1)</script> "double" 'single' & amp;\nsecond line\twith tab`,
  `</svg>${XSS}<img src=x onerror="window.__pwned=3"> nul:\u0000 lone:\uD800 end`,
  'Tab\tand unicode ✓ 日本語 🙂 &amp; already-escaped',
];
const EVIL_PIPE = `transformers.js </svg>${XSS}`;

/** How the page shows characters HTML cannot carry: as visible escapes (the test's own spec). */
function visible(s: string): string {
  return s.replace(/\u0000/g, '\\u0000').replace(/\uD800(?![\uDC00-\uDFFF])/g, '\\uD800');
}

function stats(positions: number, maxAbs: number, top1: number, kl: number) {
  return { positions, maxAbs, maxRel: maxAbs / 11, top1Agreement: top1, meanKl: kl };
}

function speed(pipeline: string, tpot: number): PipelineSpeed {
  return {
    pipeline,
    ttftMs: tpot * 2.1,
    tpotMedianMs: tpot,
    tpotP90Ms: tpot * 1.15,
    decodeTokensPerSec: 1000 / tpot,
    prefillTokensPerSec: 8000 / (tpot * 2.1),
    perPosition: Array.from({ length: 40 }, (_, i) => [8 + i, tpot * (1 + i / 200) + (i % 7 === 3 ? tpot * 0.2 : 0)] as [number, number]),
  };
}

function prompt(index: number, over: Partial<PromptResult>): PromptResult {
  const tokens = [' is', ' a', ' deep', ' learning', ' optimization', ' library', '.'];
  return {
    index,
    prompt: PROMPTS[index]!,
    verdict: 'match',
    reason: 'identical tokens',
    reference: { ids: tokens.map((_, i) => 100 + i), tokens, text: tokens.join('') },
    candidate: { ids: tokens.map((_, i) => 100 + i), tokens, text: tokens.join('') },
    firstDivergence: null,
    similarity: 1,
    diff: [{ kind: 'equal', tokens }],
    logits: {
      prefill: stats(8, 0.041, 1, 2e-5),
      decode: stats(6, 0.087, 1, 4e-5),
      perPositionMaxAbs: Array.from({ length: 14 }, (_, i) => 0.02 + 0.005 * i + (i % 3) * 0.01),
    },
    ...over,
  };
}

const REF_TOKENS = [' the', '\n', '</script>', '"\'&', ' code', ' runs'];
const CAND_TOKENS = [' the', '\n', '\u0000', '\uD800', '', `<img src=x onerror="window.__pwned=2">`];

function fixture(): CompareReport {
  return {
    schema: COMPARE_SCHEMA,
    status: 'complete',
    createdAt: '2025-03-14T09:15:02.345Z',
    command: ['fusegen', 'compare', '--model', `/models/evil<svg onload=alert(1)>"'&\u0000name`, '--dtype', 'float16', '--device', 'webgpu'],
    model: { dir: `/models/evil<svg onload=alert(1)>"'&\u0000name`, modelType: 'opt', candidateDir: `/cache/fusegen/<b>injected</b>/"q"` },
    settings: { dtype: 'float16', device: 'webgpu', useKernel: true, kernels: 'wgsl', batchSize: 1, numInputs: 4, minLength: 8, maxLength: 32 },
    tolerance: { atol: 0.25, rtol: 0.03, maxKl: 0.01, minTop1Agreement: 0.97, nearTie: 0.5, topN: 5, gate: true },
    environment: {
      node: 'v20.19.0',
      platform: 'linux x64',
      fusegen: '0.1.0',
      onnxruntimeNode: '1.30.0',
      transformersJs: '4.3.2',
      gitCommit: '1269c0f0123456789abcdef0123456789abcdef0',
      executionProviders: { reference: ['WebGpuExecutionProvider'], candidate: ['WebGpuExecutionProvider', 'CPUExecutionProvider'] },
      adapter: 'llvmpipe <Mesa> "lavapipe"',
    },
    fusions: { GroupQueryAttention: 24, SkipLayerNormalization: 48, FastGelu: 24 },
    prompts: [
      prompt(0, {}),
      prompt(1, {
        verdict: 'tolerated',
        reason: `near tie at generated token 3: margin 0.21 <= 0.5 & "both" in top-5 <b>`,
        candidate: { ids: [100, 101, 102, 140, 104, 105, 106], tokens: [' is', ' a', ' deep', ' neural', ' optimization', ' library', '.'], text: ' is a deep neural optimization library.' },
        firstDivergence: 3,
        similarity: 0.8571,
        diff: [
          { kind: 'equal', tokens: [' is', ' a', ' deep'] },
          { kind: 'removed', tokens: [' learning'] },
          { kind: 'added', tokens: [' neural'] },
          { kind: 'equal', tokens: [' optimization', ' library', '.'] },
        ],
      }),
      prompt(2, {
        verdict: 'mismatch',
        reason: `reference top-2 margin 3.1000 > 0.5 </td></tr></table>${XSS}`,
        reference: { ids: [1, 2, 3, 4, 5, 6], tokens: REF_TOKENS, text: REF_TOKENS.join('') },
        candidate: { ids: [1, 2, 7, 8, 9, 10], tokens: CAND_TOKENS, text: CAND_TOKENS.join('') },
        firstDivergence: 2,
        similarity: 0.31,
        diff: [
          { kind: 'equal', tokens: [' the', '\n'] },
          { kind: 'removed', tokens: ['</script>', '"\'&', ' code', ' runs'] },
          { kind: 'added', tokens: ['\u0000', '\uD800', '', `<img src=x onerror="window.__pwned=2">`] },
        ],
        logits: {
          prefill: stats(12, 0.11, 1, 3e-4),
          // The full rows' figures (issue 29 item 1); prefill left as a report written before them.
          decode: { ...stats(5, 4.2, 0.6, 0.81), unionMaxAbs: 4.7, fullMaxAbs: 6.1, maxKl: 2.5 },
          perPositionMaxAbs: [0.05, 0.04, 0.08, 0.06, 0.1, 0.07, 0.09, 0.05, 0.08, 0.06, 0.11, 0.09, 0.3, 4.2, 3.1, 2.5, 3.9],
        },
        triage: {
          runs: [
            { variant: 'cpu', verdict: 'match', maxAbs: 0.0001 },
            { variant: 'plain', verdict: 'mismatch', maxAbs: 4.1 },
            { variant: `no-<attention>"&'`, verdict: 'tolerated', maxAbs: 0.4 },
          ],
          blame: `the WebGPU kernel: the same graph on the CPU matches </svg>${XSS}`,
        },
      }),
      prompt(3, {
        verdict: 'errored',
        reason: `Error: ORT failed loading "/tmp/<b>x</b>/model.onnx" & 'friends'\n    at Session.load (/src/runtime/session.ts:12:3)\u0000`,
        reference: { ids: [], tokens: [], text: '' },
        candidate: { ids: [], tokens: [], text: '' },
        similarity: 0,
        diff: [],
        logits: null,
      }),
    ],
    speed: { reference: speed(EVIL_PIPE, 24.5), candidate: speed('fusegen injected (webgpu, float16)', 17.5), decodeSpeedup: 1.4 },
    summary: { matches: 1, tolerated: 1, mismatches: 1, errored: 1 },
    gate: {
      exitCode: 1,
      reasons: ['prompt 2: mismatch (reference top-2 margin 3.1000 > 0.5)', `prompt 3 errored: ORT failed <script>`],
      baseline: { file: `reports/<old>"&'.json`, decodeTokensPerSec: 60.2, regressionPct: -4.9, maxRegressionPct: 5 },
    },
  };
}

/** An interrupted run with non-finite figures (which JSON would write as null). */
function interruptedFixture(): CompareReport {
  const r = fixture();
  r.status = 'interrupted';
  r.stoppedBy = `SIGINT <ctrl-c> "user" & co`;
  r.prompts = [r.prompts[0]!, r.prompts[2]!];
  r.prompts[0]!.logits!.decode.maxAbs = NaN;
  r.prompts[0]!.logits!.decode.meanKl = Infinity;
  r.prompts[0]!.logits!.perPositionMaxAbs[5] = NaN;
  r.prompts[0]!.similarity = NaN;
  r.summary = { matches: 1, tolerated: 0, mismatches: 1, errored: 0 };
  r.speed!.candidate.tpotMedianMs = NaN;
  r.speed!.candidate.ttftMs = Infinity;
  r.speed!.decodeSpeedup = NaN;
  delete r.gate.baseline;
  return r;
}

function failedFixture(): CompareReport {
  const r = fixture();
  r.status = 'failed';
  r.stoppedBy = `Error: no WebGPU adapter </div>${XSS}`;
  r.prompts = [];
  r.speed = null;
  r.summary = { matches: 0, tolerated: 0, mismatches: 0, errored: 0 };
  r.gate = { exitCode: 1, reasons: ['the run failed'] };
  r.fusions = {};
  r.environment.gitCommit = null;
  r.environment.adapter = null;
  return r;
}

function errorOf(f: () => void): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('validateCompareReport', () => {
  it('accepts the realistic fixture and the interrupted and failed variants', () => {
    expect(() => validateCompareReport(fixture())).not.toThrow();
    expect(() => validateCompareReport(interruptedFixture())).not.toThrow();
    expect(() => validateCompareReport(failedFixture())).not.toThrow();
    // A file read back: NaN became null, and it is still a report.
    expect(() => validateCompareReport(JSON.parse(JSON.stringify(interruptedFixture())))).not.toThrow();
  });

  it('rejects a missing field, naming its path', () => {
    const r = fixture() as unknown as { model: Record<string, unknown> };
    delete r.model['dir'];
    const m = errorOf(() => validateCompareReport(r));
    expect(m).toMatch(/^invalid compare report: /);
    expect(m).toContain('model.dir: is required');
    expect(m).not.toContain('\n');
  });

  it('rejects a verdict outside the enum, naming the prompt', () => {
    const r = fixture() as unknown as { prompts: Array<Record<string, unknown>> };
    r.prompts[2]!['verdict'] = 'maybe';
    expect(errorOf(() => validateCompareReport(r))).toContain('prompts[2].verdict: must be one of "match", "tolerated", "mismatch", "errored"');
  });

  it('rejects another schema version', () => {
    const r = { ...fixture(), schema: 'fusegen.compare/2' };
    expect(errorOf(() => validateCompareReport(r))).toContain(`schema: must be "${COMPARE_SCHEMA}"`);
  });

  it('rejects unknown fields, wrong types, and errored triage verdicts, several in one line', () => {
    const r = fixture() as unknown as Record<string, any>;
    r['extra'] = 1;
    r['settings'].batchSize = '1';
    r['prompts'][2].triage.runs[0].verdict = 'errored';
    r['speed'].reference.perPosition[0] = [1, 2, 3];
    const m = errorOf(() => validateCompareReport(r));
    expect(m).toContain('extra: is not allowed');
    expect(m).toContain('settings.batchSize: must be integer');
    expect(m).toContain('prompts[2].triage.runs[0].verdict: must be one of');
    expect(m).toContain('speed.reference.perPosition[0]: must NOT have more than 2 items');
    expect(m.split('\n')).toHaveLength(1);
  });

  it('rejects a run that stopped without saying why, and triage on a non-mismatch', () => {
    const a = fixture();
    a.status = 'interrupted';
    expect(errorOf(() => validateCompareReport(a))).toContain('stoppedBy: is required');
    const b = fixture();
    b.prompts[0]!.triage = { runs: [], blame: 'x' };
    expect(errorOf(() => validateCompareReport(b))).toContain('prompts[0].verdict: must be "mismatch"');
  });

  it('rejects a summary that does not count the verdicts, and ids that do not pair with tokens', () => {
    const a = fixture();
    a.summary.matches = 2;
    expect(errorOf(() => validateCompareReport(a))).toContain('summary.matches: is 2 but the prompts have 1');
    const b = fixture();
    b.prompts[1]!.candidate.ids.pop();
    expect(errorOf(() => validateCompareReport(b))).toContain('prompts[1].candidate: 6 ids but 7 tokens');
  });

  it('says how many more problems there were than it lists', () => {
    expect(errorOf(() => validateCompareReport({}))).toMatch(/^invalid compare report: schema: is required; status: is required; .* \(and \d+ more\)$/);
    expect(errorOf(() => validateCompareReport(null))).toContain('(root): must be object');
  });
});

describe('writeCompareReports', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fusegen-report-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const STEM = /^20250314-091502-345-[0-9a-f]{6}-evil_svg_onload_alert_1_name-compare$/;
  const stems = (names: string[]) => [...new Set(names.map((n) => n.replace(/\.(json|html)$/, '')))];

  it('names files from the UTC timestamp to the millisecond, a random part and a sanitized model basename', () => {
    expect(reportTimestamp('2025-03-14T09:15:02.345Z')).toBe('20250314-091502-345');
    expect(reportTimestamp('2025-01-01T00:30:00+01:00')).toBe('20241231-233000-000');
    expect(() => reportTimestamp('yesterday')).toThrow(/createdAt: not a date/);
    expect(modelBasename(`/models/evil<svg onload=alert(1)>"'&\u0000name`)).toBe('evil_svg_onload_alert_1_name');
    expect(modelBasename('C:\\models\\Llama 3.2 (1B)\\')).toBe('Llama_3.2_1B_');
    expect(modelBasename('/')).toBe('model');
    expect(modelBasename('..')).toBe('model');
  });

  it('writes the JSON and HTML into a new directory, leaving no temp files', () => {
    const out = join(dir, 'nested', 'reports');
    const report = fixture();
    const w = writeCompareReports(report, out);
    expect(w.json.slice(0, -'.json'.length)).toBe(w.html.slice(0, -'.html'.length));
    expect(w.json.startsWith(join(out, '/'))).toBe(true);
    expect(w.json.slice(out.length + 1, -'.json'.length)).toMatch(STEM);
    expect(readdirSync(out).sort()).toEqual([basename(w.html), basename(w.json)]);
    expect(JSON.parse(readFileSync(w.json, 'utf8'))).toEqual(report);
    expect(readFileSync(w.html, 'utf8')).toBe(renderCompareHtml(report));
  });

  it('two reports of the same millisecond into one directory both survive, whole', () => {
    const out = join(dir, 'same-ms');
    const a = fixture();
    const b: CompareReport = { ...fixture(), command: [...fixture().command, '--second'] };
    const wa = writeCompareReports(a, out);
    const wb = writeCompareReports(b, out);
    expect(wa.json).not.toBe(wb.json);
    const names = readdirSync(out);
    expect(names).toHaveLength(4);
    expect(stems(names)).toHaveLength(2);
    for (const s of stems(names)) expect(s).toMatch(STEM);
    expect(JSON.parse(readFileSync(wa.json, 'utf8'))).toEqual(a);
    expect(JSON.parse(readFileSync(wb.json, 'utf8'))).toEqual(b);
    expect(readFileSync(wb.html, 'utf8')).toBe(renderCompareHtml(b));
  });

  it('never replaces an existing file: a taken name moves the whole set to another random part', () => {
    const out = join(dir, 'taken');
    mkdirSync(out);
    // The HTML name of the first random part is taken (by a file, then by a directory).
    const taken = join(out, '20250314-091502-345-aaaaaa-r-compare.html');
    writeFileSync(taken, 'an earlier report');
    mkdirSync(join(out, '20250314-091502-345-bbbbbb-r-compare.html'));
    const parts = ['aaaaaa', 'bbbbbb', 'cccccc'];
    const w = writeReportFiles(out, '20250314-091502-345', 'r-compare', [{ suffix: '.json', text: '{"new":1}' }, { suffix: '.html', text: 'new page' }], () => parts.shift()!);
    expect(w).toEqual({ '.json': join(out, '20250314-091502-345-cccccc-r-compare.json'), '.html': join(out, '20250314-091502-345-cccccc-r-compare.html') });
    expect(readFileSync(taken, 'utf8')).toBe('an earlier report');
    expect(readdirSync(out).sort()).toEqual([
      '20250314-091502-345-aaaaaa-r-compare.html',
      '20250314-091502-345-bbbbbb-r-compare.html',
      '20250314-091502-345-cccccc-r-compare.html',
      '20250314-091502-345-cccccc-r-compare.json',
    ]);
    expect(readFileSync(w['.json']!, 'utf8')).toBe('{"new":1}');
    expect(readFileSync(w['.html']!, 'utf8')).toBe('new page');
  });

  it('gives up when every name is taken, leaving what was there and no temp or half files', () => {
    const out = join(dir, 'all-taken');
    mkdirSync(out);
    writeFileSync(join(out, 'p-zzzzzz-r.json'), 'earlier');
    expect(() => writeReportFiles(out, 'p', 'r', [{ suffix: '.html', text: 'x' }, { suffix: '.json', text: 'y' }], () => 'zzzzzz')).toThrow(/report names in a row were taken/);
    expect(readdirSync(out)).toEqual(['p-zzzzzz-r.json']);
    expect(readFileSync(join(out, 'p-zzzzzz-r.json'), 'utf8')).toBe('earlier');
  });

  it('writes nothing for an invalid report', () => {
    const bad = join(dir, 'bad');
    expect(() => writeCompareReports({ ...fixture(), schema: 'nope' } as unknown as CompareReport, bad)).toThrow(/schema: must be/);
    expect(existsSync(bad)).toBe(false);
  });
});

describe('renderCompareHtml (as text)', () => {
  const html = renderCompareHtml(fixture());
  it('escapes every hostile string: no markup from the report survives', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<img/i);
    expect(html).not.toContain('\u0000');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &quot;double&quot; &#39;single&#39; &amp; amp;');
    expect(html).toContain('&lt;/svg&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;');
    // Only our own </svg> closers: one per chart, none from the strings.
    expect(html.match(/<\/svg>/g)?.length).toBe(html.match(/<svg /g)?.length);
  });
  it('is well-formed Unicode (lone surrogates made visible, not written)', () => {
    expect(Buffer.from(html, 'utf8').toString('utf8')).toBe(html);
    expect(html).toContain('lone:<span class="ctl">\\uD800</span>');
  });
  it('shows non-finite figures as n/a, never NaN or Infinity', () => {
    const text = renderCompareHtml(interruptedFixture()).replace(/<[^>]*>/g, '');
    expect(text).toContain('n/a');
    expect(text).not.toMatch(/NaN|Infinity/);
  });
});

describe('the HTML page in headless Chromium', () => {
  let context: BrowserContext;
  let closeBrowser: () => Promise<void>;
  let dir: string;
  const network: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fusegen-html-'));
    ({ context, close: closeBrowser } = await launchChromium());
  });
  afterAll(async () => {
    await closeBrowser?.();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a report's page; returns it with the console errors and page errors it raised. */
  async function open(report: CompareReport, name: string): Promise<{ page: Page; errors: string[] }> {
    const file = join(dir, `${name}.html`);
    writeFileSync(file, renderCompareHtml(report));
    return openOffline(context, file, network);
  }

  it('renders the full report: sections, exact texts, charts, tokens, no script', async () => {
    const report = fixture();
    const { page, errors } = await open(report, 'full');

    // Every prompt section, showing its prompt text exactly (what HTML cannot hold, as escapes).
    expect(await page.locator('section.prompt').count()).toBe(report.prompts.length);
    for (const p of report.prompts) {
      const section = page.locator(`section.prompt#prompt-${p.index}`);
      expect(await section.count()).toBe(1);
      expect(await section.locator('.prompt-text').textContent()).toBe(visible(p.prompt));
      expect(await section.locator('.badge').first().textContent()).toBe(p.verdict);
    }
    expect(await page.locator('#prompt-1 .prompt-text').textContent()).toBe(PROMPTS[1]);

    // A logit chart with a drawn line for each prompt with logits, none for the errored one.
    for (const p of report.prompts) {
      const d = await page.locator(`#prompt-${p.index} svg.chart path.series`).evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
      if (p.logits) {
        expect(d).toHaveLength(1);
        expect(d[0]).toMatch(/^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+)+$/);
        expect(d[0]!.split('L')).toHaveLength(p.logits.perPositionMaxAbs.length);
      } else {
        expect(d).toHaveLength(0);
      }
    }
    expect(await page.locator('#prompt-2 svg.chart .marker.divergence-marker').count()).toBe(1);
    expect(await page.locator('#prompt-0 svg.chart .marker').count()).toBe(0);

    // Speed: the bar chart with 5 metrics x 2 pipelines, the line chart with both pipelines.
    const bars = await page.locator('svg.speed-bars rect.bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('width'))));
    expect(bars).toHaveLength(10);
    for (const w of bars) expect(w).toBeGreaterThan(0);
    const lines = await page.locator('svg.speed-lines path.series').evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
    expect(lines).toHaveLength(2);
    for (const d of lines) expect(d.split('L')).toHaveLength(40);
    // Hostile text inside SVG is text, not markup.
    expect(await page.locator('svg.speed-lines text.legend').first().textContent()).toBe(`reference (${Array.from(EVIL_PIPE).slice(0, 24).join('')}…)`);
    expect(await page.locator('svg.speed-bars text.legend').first().textContent()).toContain('transformers.js </svg><script>');

    // Nothing from the report ran or became an element.
    expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(await page.evaluate(() => document.querySelectorAll('script').length)).toBe(0);
    expect(await page.evaluate(() => document.querySelectorAll('img, iframe, object, embed, svg svg, [onload], [onerror]').length)).toBe(0);

    // The mismatch's divergent tokens, both sides, and only there.
    expect(await page.locator('#prompt-2 .tokens.ref .tok.divergent').allTextContents()).toEqual(['</script>']);
    expect(await page.locator('#prompt-2 .tokens.cand .tok.divergent').allTextContents()).toEqual(['\\u0000']);
    expect(await page.locator('#prompt-1 .tok.divergent').allTextContents()).toEqual([' learning', ' neural']);
    expect(await page.locator('#prompt-0 .tok.divergent').count()).toBe(0);
    expect(await page.locator('#prompt-2 .tokens.ref .tok').count()).toBe(REF_TOKENS.length);
    expect(await page.locator('#prompt-2 .tokens.cand .tok').allTextContents()).toEqual([' the', '\\n', '\\u0000', '\\uD800', '', '<img src=x onerror="window.__pwned=2">']);
    // The diff runs.
    expect(await page.locator('#prompt-2 .diff del.removed').allTextContents()).toEqual(['</script>', '"\'&', ' code', ' runs']);
    expect(await page.locator('#prompt-2 .diff ins.added').count()).toBe(4);
    expect(await page.locator('#prompt-1 .diff del.removed').allTextContents()).toEqual([' learning']);
    // Triage, logit stats, the errored prompt's error.
    expect(await page.locator('#prompt-2 table.triage tbody tr').count()).toBe(3);
    expect(await page.locator('#prompt-2 table.triage tbody tr').nth(2).locator('td').first().textContent()).toBe(`no-<attention>"&'`);
    expect(await page.locator('#prompt-2 .blame').textContent()).toBe(`Blame: the WebGPU kernel: the same graph on the CPU matches </svg>${XSS}`);
    expect(await page.locator('#prompt-2 table.stats tbody tr').nth(1).textContent()).toBe('decode54.200.38260.0%0.8104.706.102.50');
    expect(await page.locator('#prompt-2 table.stats tbody tr').nth(0).textContent()).toMatch(/n\/an\/an\/a$/);
    expect(await page.locator('#prompt-2 table.stats thead').textContent()).toContain('max |Δ| (both top-10)');
    // The summary table's logit column is the union's error where the report has it.
    expect(await page.locator('#summary table.index tbody tr').nth(2).locator('td').last().textContent()).toBe('4.70');
    expect(await page.locator('section.card', { hasText: 'Tolerance' }).textContent()).toContain("over both sides' top-10");
    expect(await page.locator('section.card', { hasText: 'Tolerance' }).textContent()).toContain('KL(reference ‖ candidate) ≤');
    expect(await page.locator('#prompt-3 pre.error').textContent()).toBe(report.prompts[3]!.reason.replace('\u0000', '\\u0000'));
    expect(await page.locator('#prompt-3 table.stats').count()).toBe(0);

    // Header and summary.
    expect(await page.locator('.banner').count()).toBe(0);
    expect(await page.locator('.page-head .kv dd code').allTextContents()).toEqual([visible(report.model.dir), report.model.candidateDir, report.environment.gitCommit]);
    expect(await page.locator('.tiles .n').allTextContents()).toEqual(['1', '1', '1', '1']);
    expect(await page.locator('.summary .gate').textContent()).toBe('FAIL');
    expect(await page.locator('.reasons li').allTextContents()).toEqual(report.gate.reasons);
    expect(await page.locator('table.baseline').textContent()).toContain(`reports/<old>"&'.json`);
    expect(await page.locator('.env').textContent()).toContain('candidate: WebGpuExecutionProvider, CPUExecutionProvider');
    expect(await page.title()).toBe(`fusegen compare · ${visible('evil<svg onload=alert(1)>"\'&\u0000name')} · ${report.createdAt}`);

    // Readable layout: nothing wider than the window.
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);

    await page.screenshot({ path: '/tmp/compare-report.png', fullPage: true });
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
    await page.close();
  });

  it('shows an interrupted run with a banner and n/a for non-finite figures', async () => {
    const { page, errors } = await open(interruptedFixture(), 'interrupted');
    expect(await page.locator('.banner.status-interrupted').textContent()).toContain('stopped by: SIGINT <ctrl-c> "user" & co');
    expect(await page.locator('section.prompt').count()).toBe(2);
    const body = (await page.locator('body').textContent()) ?? '';
    expect(body).not.toMatch(/NaN|Infinity/);
    expect(await page.locator('#prompt-0 table.stats tbody tr').nth(1).locator('td').nth(1).textContent()).toBe('n/a');
    expect(await page.locator('.speed-table tbody tr').nth(1).locator('td').nth(1).textContent()).toBe('n/a');
    expect(await page.locator('.speedup').textContent()).toBe('decode speedup n/a');
    // The NaN position breaks the line into two pieces.
    expect((await page.locator('#prompt-0 svg.chart path.series').getAttribute('d'))?.match(/M/g)).toHaveLength(2);
    await page.screenshot({ path: '/tmp/compare-report-interrupted.png', fullPage: true });
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
    await page.close();
  });

  it('shows a failed run with no prompts and no speed', async () => {
    const { page, errors } = await open(failedFixture(), 'failed');
    expect(await page.locator('.banner.status-failed .stopped-by').textContent()).toBe(`Error: no WebGPU adapter </div>${XSS}`);
    expect(await page.locator('section.prompt').count()).toBe(0);
    expect(await page.locator('#speed').textContent()).toContain('No speed measurement in this run.');
    expect(await page.locator('svg.chart').count()).toBe(0);
    expect(await page.locator('#summary').textContent()).toContain('No prompt finished.');
    expect(await page.evaluate(() => document.querySelectorAll('script').length)).toBe(0);
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
    await page.close();
  });
  it('says the speed verdict with its intervals: a difference where the interval excludes 1, "no significant difference" where it includes it', async () => {
    const rng = mulberry32(3);
    /** 3 runs of 40 steps around `ms`, spread +-spread; times to first token around `ttft`, +-40%. */
    const runs = (ms: number, spread: number, ttft: number): RunSamples[] =>
      Array.from({ length: 3 }, () => {
        const steps = Array.from({ length: 40 }, () => ms * (1 + spread * (2 * rng() - 1)));
        return { firstTokenMs: ttft * (1 + 0.4 * (2 * rng() - 1)), decodeStepMs: steps, totalMs: ttft + steps.reduce((a, b) => a + b, 0) };
      });
    const report = fixture();
    // Decode steps clearly faster (tight), prefill the same (noisy).
    const ref = runs(24.5, 0.05, 50);
    const cand = runs(17.5, 0.05, 50);
    report.speed = { ...report.speed!, reference: { ...report.speed!.reference, samples: ref }, candidate: { ...report.speed!.candidate, samples: cand }, intervals: speedIntervals(ref, cand) };
    report.gate.baseline = { file: 'reports/base.json', decodeTokensPerSec: 58, regressionPct: 0, maxRegressionPct: 5, speedRatio: bootstrapRatio(runs(17.5, 0.3, 50).map((r) => r.decodeStepMs), cand.map((r) => r.decodeStepMs), 'median'), significant: false };
    report.gate.baseline.regressionPct = (1 - report.gate.baseline.speedRatio!.estimate) * 100;
    expect(report.speed.intervals!.tpotMedian.significant).toBe(true);
    expect(report.speed.intervals!.ttft.significant).toBe(false);
    expect(report.gate.baseline.speedRatio!.significant).toBe(false);
    expect(() => validateCompareReport(report)).not.toThrow();
    const { page, errors } = await open(report, 'intervals');
    const iv = report.speed.intervals!.tpotMedian;
    expect(await page.locator('.speedup').textContent()).toBe(`decode speedup ${iv.estimate.toFixed(2)}×95% CI ${iv.low.toFixed(2)}–${iv.high.toFixed(2)}× (median of 2000 bootstrap ratios over steps and runs, seed 42)`);
    // Per figure: the table's last column and the bars' labels say which differences are real.
    const ratios = await page.locator('.speed-table td.ratio').allTextContents();
    expect(ratios).toHaveLength(5);
    expect(ratios[0]).toMatch(/^no significant difference \(/); // time to first token
    expect(ratios[1]).toMatch(/^1\.\d\d× \(95% CI 1\.\d\d–1\.\d\d×\)$/); // time per output token, median
    expect(ratios[4]).toBe(ratios[0]); // prefill: the same ratio as the time to first token
    const labels = await page.locator('svg.speed-bars text.bar-ratio').allTextContents();
    expect(labels[0]).toBe('no significant difference');
    expect(labels[1]).toMatch(/^1\.\d\d× better$/);
    expect(await page.locator('table.baseline').textContent()).toContain('no significant difference');
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await page.screenshot({ path: '/tmp/compare-report-intervals.png', fullPage: true });
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
    await page.close();
  });
});
