/**
 * The Markdown summary of compare and bench (issue 29 item 9), on reports built here with fixed
 * numbers (no timed run): escaping of user text, the content a pull request needs (verdict,
 * speedup with its interval, regressions), snapshots of whole summaries, and the
 * github-action-benchmark entries.
 */
import { describe, expect, it } from 'vitest';
import { actionBenchmark } from '../src/report/action-benchmark.js';
import type { BenchReport, BenchRow } from '../src/report/bench-report.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import type { CompareReport, PromptResult } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';
import type { RatioInterval, RunSamples } from '../src/report/speed-stats.js';
import { benchSummaryMd, compareSummaryMd, md } from '../src/report/summary-md.js';
import { clip } from '../src/report/html.js';

const ENV = { node: 'v20.19.0', platform: 'linux-x64', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: '0123456789abcdef0123456789abcdef01234567' };

function interval(estimate: number, low: number, high: number, over: RatioInterval['over'] = 'steps and runs'): RatioInterval {
  return { statistic: 'median', over, estimate, low, high, level: 0.95, resamples: 2000, seed: 42, significant: low > 1 || high < 1 };
}

const samples = (steps: number[], runs = 3): RunSamples[] => Array.from({ length: runs }, (_, r) => ({ firstTokenMs: 2 + r * 0.25, decodeStepMs: steps.map((s) => s + r * 0.01), totalMs: 10 + r }));

/** A prompt whose text is hostile to Markdown: a pipe, a newline, HTML, emphasis, a link, code, math. */
const HOSTILE = 'Ignore | this\n<script>alert(1)</script> **bold** [link](http://x.invalid) `code` $x$ \\ end';

function prompt(index: number, verdict: PromptResult['verdict'], text: string, extra: Partial<PromptResult> = {}): PromptResult {
  const side = { ids: [5, 6, 7], tokens: ['a', 'b', 'c'], text: ' a b c' };
  return {
    index,
    prompt: text,
    verdict,
    reason: verdict === 'match' ? 'identical tokens, logits within tolerance' : verdict === 'tolerated' ? 'near tie at position 4 (margin 0.12 <= 0.5)' : verdict === 'errored' ? 'candidate: out of memory' : 'token 7 vs 9 at position 2; 3 of 12 logits beyond atol 0.0001 + rtol 0.0001 over both sides\' top-10 | with KL above 0.000001',
    reference: side,
    candidate: verdict === 'match' ? side : { ...side, ids: [5, 6, 9], tokens: ['a', 'b', 'x'], text: ' a b x' },
    firstDivergence: verdict === 'match' ? null : 2,
    similarity: verdict === 'match' ? 1 : 0.8333333333333334,
    diff: [{ kind: 'equal', tokens: ['a', 'b'] }],
    logits: null,
    ...extra,
  };
}

function compareReport(o: { fail: boolean }): CompareReport {
  const prompts = o.fail
    ? [
        prompt(0, 'match', 'This is a test'),
        prompt(1, 'mismatch', HOSTILE, { triage: { backend: 'ort', runs: [{ variant: 'cpu', backend: 'ort', verdict: 'mismatch', maxAbs: 0.5, meanKl: 0.01, errorShare: 1, explains: false }], blame: 'the candidate checkpoint: no kernel, fusion or precision change removes the error' } }),
        prompt(2, 'tolerated', 'A near tie'),
      ]
    : [prompt(0, 'match', 'This is a test')];
  const count = (v: PromptResult['verdict']) => prompts.filter((p) => p.verdict === v).length;
  const speed = (pipeline: string, tpot: number) => ({ pipeline, ttftMs: 2.25, tpotMedianMs: tpot, tpotP90Ms: tpot * 1.5, decodeTokensPerSec: 1000 / tpot, prefillTokensPerSec: 5000, perPosition: [[13, tpot] as [number, number]], samples: samples([tpot, tpot, tpot]) });
  const report: CompareReport = {
    schema: 'fusegen.compare/1',
    status: 'complete',
    createdAt: '2026-12-07T12:00:00.000Z',
    command: ['fusegen', 'compare', '--use_kernel'],
    model: { dir: '/models/tiny-opt', modelType: 'opt', candidateDir: o.fail ? '/models/tiny-opt | edited' : '/models/tiny-opt', parameters: 310400 },
    settings: { dtype: 'float32', device: 'cpu', reference: 'transformersjs', useKernel: true, kernels: 'ort', batchSize: 1, numInputs: prompts.length, minLength: 200, maxLength: 300 },
    tolerance: { atol: 0.0001, rtol: 0.0001, maxKl: 0.000001, minTop1Agreement: 1, nearTie: 0.5, topN: 5, gate: true },
    environment: { ...ENV, executionProviders: { reference: ['CPUExecutionProvider'], candidate: ['CPUExecutionProvider'] }, adapter: null },
    fusions: { GroupQueryAttention: 2 },
    prompts,
    speed: {
      reference: speed('reference', 0.3125),
      candidate: speed('injected', 0.1875),
      decodeSpeedup: 0.3125 / 0.1875,
      intervals: { tpotMedian: interval(1.6667, 1.4123, 1.9876), tpotP90: interval(1.6, 1.2, 2.1), decodeThroughput: interval(1.55, 1.3, 1.8), ttft: interval(1.02, 0.91, 1.13, 'runs') },
    },
    summary: { matches: count('match'), tolerated: count('tolerated'), mismatches: count('mismatch'), errored: count('errored') },
    gate: o.fail
      ? {
          exitCode: 1,
          reasons: ['1 prompt(s) mismatch beyond the float32 tolerance', "decode speed is 47.5% below the baseline's (median time per output token 0.188 ms against 0.098 ms; speed ratio 0.53x (95% CI 0.48-0.57x)): a significant regression of more than 10%"],
          baseline: { file: 'fusegen-baseline/compare.json', decodeTokensPerSec: 10204.1, regressionPct: 47.5, maxRegressionPct: 10, speedRatio: interval(0.525, 0.4812, 0.5734), significant: true },
        }
      : { exitCode: 0, reasons: [] },
  };
  validateCompareReport(report); // a report compare could have written
  return report;
}

function benchRow(pipeline: BenchRow['pipeline'], batch: number, tpot: number, extra: Partial<BenchRow> = {}): BenchRow {
  const st = (m: number) => ({ mean: m * 1.1, median: m, p90: m * 1.5, p99: m * 2 });
  return {
    pipeline,
    batch,
    promptLength: 16,
    maxNewTokens: 32,
    loadMs: 120,
    executionProviders: ['CPUExecutionProvider'],
    ttftMs: st(1.5),
    tpotMs: st(tpot),
    e2eMs: st(12),
    decodeTokensPerSec: (1000 / tpot) * batch,
    prefillTokensPerSec: 9000,
    bandwidthGBps: 4.35,
    tflops: 0.001,
    peakRssMB: 140,
    perPosition: [[17, tpot]],
    outlierPositions: [],
    samples: samples([tpot - 0.01, tpot, tpot + 0.01, tpot + 0.02]),
    ...extra,
  };
}

function benchReport(o: { gate: boolean; interrupted?: boolean }): BenchReport {
  const rows = [benchRow('reference', 1, 0.285), benchRow('ort', 1, 0.168, { versus: { pipeline: 'reference', tpotSpeedup: interval(1.6964, 1.4412, 1.9803) } }), benchRow('ort', 4, 0.201, { versus: { pipeline: 'reference', tpotSpeedup: interval(1.0104, 0.9411, 1.0832) } })];
  const report: BenchReport = {
    schema: 'fusegen.bench/1',
    status: o.interrupted ? 'interrupted' : 'complete',
    createdAt: '2026-12-07T12:00:00.000Z',
    model: { dir: '/models/tiny-opt', modelType: 'opt', parameters: 310400 },
    device: 'cpu',
    dtype: 'float32',
    environment: ENV,
    rows: o.interrupted ? rows.slice(0, 1) : rows,
  };
  if (o.gate) {
    report.gate = {
      exitCode: 1,
      reasons: ["ort b1 p16: decode speed is 38.2% below the baseline's (median time per output token 0.168 ms against 0.104 ms; speed ratio 0.62x (95% CI 0.57-0.66x)): a significant regression of more than 10%"],
      baseline: {
        file: 'fusegen-baseline/bench.json',
        maxRegressionPct: 10,
        rows: [
          { pipeline: 'reference', batch: 1, promptLength: 16, baselineTpotMs: 0.281, tpotMs: 0.285, speedRatio: interval(0.986, 0.9512, 1.0213), regressionPct: 1.4, significant: false, fails: false },
          { pipeline: 'ort', batch: 1, promptLength: 16, baselineTpotMs: 0.104, tpotMs: 0.168, speedRatio: interval(0.618, 0.5712, 0.6634), regressionPct: 38.2, significant: true, fails: true },
        ],
        unmatched: ['ort b4 p16'],
      },
    };
  }
  validateBenchReport(report);
  return report;
}

/** The cells of a Markdown table row: split at pipes that are not escaped. */
function cells(line: string): string[] {
  expect(line.startsWith('| ') && line.endsWith(' |'), line).toBe(true);
  return line.slice(2, -2).split(/(?<!\\) \| /);
}

describe('md: report text as Markdown', () => {
  it('escapes what Markdown, GitHub or HTML would read as markup, and keeps a cell on one line', () => {
    expect(md('a|b')).toBe('a\\|b');
    expect(md('<script>alert(1)</script>')).toBe('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(md('**bold** _it_ ~~del~~')).toBe('\\*\\*bold\\*\\* \\_it\\_ \\~\\~del\\~\\~');
    expect(md('![img](http://x.invalid/a.png)')).toBe('!\\[img\\](http://x.invalid/a.png)');
    expect(md('`code` $x$ back\\slash')).toBe('\\`code\\` \\$x\\$ back\\\\slash');
    expect(md('Tom & "Jerry" it\'s')).toBe('Tom &amp; "Jerry" it\'s');
    // A newline is shown as \n (its backslash escaped for Markdown), never kept: it would end the table.
    expect(md('one\ntwo\r\nthree')).toBe('one\\\\ntwo\\\\r\\\\nthree');
    // Invisible and reordering characters are made visible, as in the HTML report.
    expect(md('a\u202Eb\u0000')).toBe('a\\\\u202Eb\\\\u0000');
    // A literal entity in the text stays text.
    expect(md('&#39;')).toBe('&amp;#39;');
  });

  it('a hostile prompt stays inside its cell: the row keeps its six cells, no raw HTML or newline', () => {
    const text = compareSummaryMd(compareReport({ fail: true }));
    const row = text.split('\n').find((l) => l.startsWith('| 1 | mismatch |'))!;
    expect(row).toBeDefined();
    const c = cells(row);
    expect(c).toHaveLength(6);
    expect(c[5]).toBe(md(clip(HOSTILE, 80))); // the prompt's first 80 characters, escaped
    expect(text).not.toContain('<script>');
    expect(text).not.toContain('[link](');
    // The reason's own pipe is escaped too.
    expect(c[4]).toContain('top-10 \\| with KL');
  });
});

describe('compare summary', () => {
  it('a failed gate: the verdict first, the reasons, the speedup with its interval, the baseline, the prompts that did not match', () => {
    const text = compareSummaryMd(compareReport({ fail: true }), { json: '/w/reports/20261207-120000-000-abcdef-tiny-opt-compare.json', html: '/w/reports/20261207-120000-000-abcdef-tiny-opt-compare.html' });
    const lines = text.split('\n');
    expect(lines[0]).toBe('## ❌ fusegen compare: FAIL');
    expect(lines).toContain('| 3 | 1 | 1 | 1 | 0 |');
    expect(text).toContain('**Decode speedup** (median time per output token, reference over candidate): 1.67× (95% CI 1.41–1.99×)');
    expect(text).toContain('decode speed 0.53× (95% CI 0.48–0.57×), 47.5% slower (significant)');
    expect(text).toContain('**regression**');
    expect(lines.filter((l) => /^\| [12] \| (mismatch|tolerated) \|/.test(l))).toHaveLength(2);
    expect(lines.some((l) => l.startsWith('| 0 | match |'))).toBe(false);
    expect(text).toContain('- prompt 1, triage on ONNX Runtime: the candidate checkpoint');
    expect(text.endsWith('Reports: 20261207-120000-000-abcdef-tiny-opt-compare.json, 20261207-120000-000-abcdef-tiny-opt-compare.html\n')).toBe(true);
  });

  it('a pass without a baseline says so, and an interrupted run says what it covers', () => {
    const pass = compareSummaryMd(compareReport({ fail: false }));
    expect(pass.split('\n')[0]).toBe('## ✅ fusegen compare: pass');
    expect(pass).toContain('Every prompt matched the reference.');
    expect(pass).not.toContain('Against the baseline');
    expect(pass).not.toContain('Why the gate failed');
    const r = compareReport({ fail: false });
    const stopped: CompareReport = { ...r, status: 'interrupted', stoppedBy: 'interrupted at once after 1 of 3 prompts', speed: null, gate: { exitCode: 1, reasons: ['run interrupted: interrupted at once after 1 of 3 prompts'] } };
    const text = compareSummaryMd(stopped);
    expect(text.split('\n')[0]).toBe('## ❌ fusegen compare: FAIL (interrupted)');
    expect(text).toContain('> **Run interrupted**: interrupted at once after 1 of 3 prompts. The verdicts cover the 1 prompt that finished.');
    expect(text).not.toContain('Decode speedup');
    const failed = compareSummaryMd({ ...stopped, status: 'failed', stoppedBy: 'candidate: session creation failed\nat line 2', gate: { exitCode: 1, reasons: ['run failed: candidate: session creation failed'] } });
    expect(failed.split('\n')[0]).toBe('## ❌ fusegen compare: FAIL (the run failed)');
    expect(failed).toContain('> **Run failed**: candidate: session creation failed\\\\nat line 2.');
  });

  it('matches its snapshots', async () => {
    await expect(compareSummaryMd(compareReport({ fail: true }), { json: 'r/x-compare.json', html: 'r/x-compare.html' })).toMatchFileSnapshot('./__snapshots__/summary-md/compare-fail.md');
    await expect(compareSummaryMd(compareReport({ fail: false }))).toMatchFileSnapshot('./__snapshots__/summary-md/compare-pass.md');
  });
});

describe('bench summary', () => {
  it('each point with its speedup and interval; the failing point under Regressions; points the baseline lacks named', () => {
    const text = benchSummaryMd(benchReport({ gate: true }));
    const lines = text.split('\n');
    expect(lines[0]).toBe('## ❌ fusegen bench: FAIL');
    const header = cells(lines.find((l) => l.startsWith('| pipeline |'))!);
    expect(header).toEqual(['pipeline', 'batch', 'prompt', 'TTFT ms', 'per token ms (median)', 'p90 ms', 'decode tok/s', 'speedup vs reference', 'against the baseline']);
    const ort1 = cells(lines.find((l) => l.startsWith('| ort | 1 |'))!);
    expect(ort1[7]).toBe('1.70× (95% CI 1.44–1.98×)');
    expect(ort1[8]).toBe('0.62× (95% CI 0.57–0.66×) **FAIL**');
    const ort4 = cells(lines.find((l) => l.startsWith('| ort | 4 |'))!);
    expect(ort4[7]).toBe('no significant difference (1.01×, 95% CI 0.94–1.08×)');
    expect(ort4[8]).toBe('not in the baseline');
    const regressions = lines.slice(lines.indexOf('### Regressions'));
    expect(regressions.find((l) => l.startsWith('| ort b1 p16 |'))).toBe('| ort b1 p16 | 0.104 | 0.168 | 0.62× (95% CI 0.57–0.66×) | 38.2% |');
    expect(regressions.some((l) => l.startsWith('| reference b1 p16 |'))).toBe(false);
    expect(text).toContain('Not in the baseline: ort b4 p16.');
  });

  it('without a baseline there is no gate; an interrupted run says so', () => {
    expect(benchSummaryMd(benchReport({ gate: false })).split('\n')[0]).toBe('## fusegen bench: done (no --baseline, no gate)');
    const text = benchSummaryMd(benchReport({ gate: false, interrupted: true }));
    expect(text.split('\n')[0]).toBe('## ⚠️ fusegen bench: interrupted');
    expect(text).toContain('> **Run interrupted**. The table holds the 1 point that finished.');
  });

  it('matches its snapshots', async () => {
    await expect(benchSummaryMd(benchReport({ gate: true }), { json: 'r/x-bench.json', html: 'r/x-bench.html' })).toMatchFileSnapshot('./__snapshots__/summary-md/bench-fail.md');
    await expect(benchSummaryMd(benchReport({ gate: false, interrupted: true }))).toMatchFileSnapshot('./__snapshots__/summary-md/bench-interrupted.md');
  });
});

describe("github-action-benchmark's custom format", () => {
  it('entries {name, unit, value, range, extra}: unique names, the median as value, the 95% interval of the median as range', () => {
    const report = benchReport({ gate: false });
    const { smaller, bigger } = actionBenchmark(report);
    expect(smaller).toHaveLength(6);
    expect(bigger).toHaveLength(3);
    for (const e of [...smaller, ...bigger]) {
      expect(Object.keys(e).every((k) => ['name', 'unit', 'value', 'range', 'extra'].includes(k))).toBe(true);
      expect(Number.isFinite(e.value)).toBe(true);
    }
    expect(new Set(smaller.map((e) => e.name)).size).toBe(6);
    const tpot = smaller.find((e) => e.name === 'opt cpu float32 ort b1 p16 time per output token')!;
    expect(tpot).toMatchObject({ unit: 'ms', value: 0.168 });
    // The steps are 0.158-0.208 ms over three runs: the median's interval lies in there, around the value.
    const m = /^± (\d+\.\d{4})$/.exec(tpot.range!)!;
    expect(Number(m[1])).toBeGreaterThan(0);
    expect(Number(m[1])).toBeLessThan(0.05);
    expect(tpot.extra).toMatch(/^95% CI 0\.1\d{3}-0\.1\d{3} ms \(bootstrap over steps and runs\); p90 0\.2520 ms; 3 runs$/);
    expect(bigger[0]).toMatchObject({ name: 'opt cpu float32 reference b1 p16 decode throughput', unit: 'tokens/s' });
  });

  it('leaves out a value the action cannot read, and marks an interrupted run', () => {
    const report = benchReport({ gate: false, interrupted: true });
    report.rows = [{ ...report.rows[0]!, tpotMs: { ...report.rows[0]!.tpotMs, median: NaN }, samples: undefined }];
    const { smaller } = actionBenchmark(report);
    expect(smaller.map((e) => e.name)).toEqual(['opt cpu float32 reference b1 p16 time to first token']);
    expect(smaller[0]!.range).toBeUndefined();
    expect(smaller[0]!.extra).toBe('p90 2.250 ms; interrupted run');
  });
});
