/**
 * Speed verdicts with statistics (issue 23 item 8): the bootstrap on known samples, the
 * regression gates of compare and bench (significant and beyond --max_regression, or it passes),
 * the words on the console and the page, and the reports' schemas old and new (the import
 * direction of the report layer is test/imports.test.ts's).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addVersus, baselineGate, statsLines, type BenchReport, type BenchRow } from '../bench/run.js';
import { baselineCheck, summaryTable } from '../compare/run.js';
import { speedIntervals } from '../compare/metrics.js';
import { renderBenchHtml } from '../src/report/bench-html.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import { COMPARE_SCHEMA, type CompareReport, type PipelineSpeed } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';
import { renderCompareHtml } from '../src/report/html.js';
import { median, percentile } from '../src/report/perf.js';
import { bootstrapRatio, mulberry32, ratioText, regression, statisticOf, type RunSamples } from '../src/report/speed-stats.js';

/** Runs x steps of times around `center`, each step `center * (1 + spread * u)`, u uniform in [-1, 1) from a seeded draw. */
function noisy(seed: number, runs: number, steps: number, center: number, spread: number): number[][] {
  const rng = mulberry32(seed);
  return Array.from({ length: runs }, () => Array.from({ length: steps }, () => center * (1 + spread * (2 * rng() - 1))));
}

function samplesOf(steps: number[][], ttft = 5): RunSamples[] {
  return steps.map((s, i) => ({ firstTokenMs: ttft + i * 0.1, decodeStepMs: s, totalMs: ttft + s.reduce((a, b) => a + b, 0) }));
}

describe('the bootstrap', () => {
  it('a clear 2x: the interval excludes 1, the estimate is 2', () => {
    const slow = noisy(1, 3, 60, 2, 0.2);
    const fast = noisy(2, 3, 60, 1, 0.2);
    const r = bootstrapRatio(slow, fast, 'median');
    expect(r.estimate).toBeGreaterThan(1.9);
    expect(r.estimate).toBeLessThan(2.1);
    expect(r.low).toBeGreaterThan(1.5);
    expect(r.high).toBeLessThan(2.5);
    expect(r.low).toBeLessThanOrEqual(r.estimate);
    expect(r.estimate).toBeLessThanOrEqual(r.high);
    expect(r).toMatchObject({ significant: true, statistic: 'median', over: 'steps and runs', level: 0.95, resamples: 2000, seed: 42 });
    expect(ratioText(r)).toBe(`${r.estimate.toFixed(2)}x (95% CI ${r.low.toFixed(2)}-${r.high.toFixed(2)}x)`);
    // Deterministic: the seeded generator gives the same interval every time, another seed another.
    expect(bootstrapRatio(slow, fast, 'median')).toEqual(r);
    expect(bootstrapRatio(slow, fast, 'median', { seed: 7 }).low).not.toBe(r.low);
  });

  it('identical noisy distributions: the interval includes 1, "no significant difference"', () => {
    const a = noisy(3, 3, 40, 1, 0.5);
    const b = noisy(4, 3, 40, 1, 0.5);
    for (const statistic of ['median', 'p90', 'mean'] as const) {
      const r = bootstrapRatio(a, b, statistic);
      expect(r.low, statistic).toBeLessThan(1);
      expect(r.high, statistic).toBeGreaterThan(1);
      expect(r.significant, statistic).toBe(false);
      expect(ratioText(r), statistic).toMatch(/^no significant difference \(\d\.\d\dx, 95% CI 0\.\d\d-1\.\d\dx\)$/);
    }
  });

  it('resamples the runs as well as the steps: runs that disagree widen the interval', () => {
    // Each run is tight, but the two runs of a side are 30% apart: run-to-run variation must count.
    const a = [noisy(5, 1, 50, 1, 0.01)[0]!, noisy(6, 1, 50, 1.3, 0.01)[0]!];
    const b = noisy(7, 2, 50, 1.15, 0.01);
    const both = bootstrapRatio(a, b, 'mean');
    expect(both.significant).toBe(false);
    // Pooled into one run (steps only), the same numbers would look like a certain difference of about 0%: much narrower.
    const pooled = bootstrapRatio([a.flat()], [b.flat()], 'mean');
    expect(pooled.high - pooled.low).toBeLessThan((both.high - both.low) / 3);
  });

  it('the estimate is the median of the bootstrap ratios; one figure per run resamples only the runs', () => {
    // Nothing to resample: every replicate's ratio is 3 / 1.5.
    expect(bootstrapRatio([[3]], [[1.5]], 'median')).toMatchObject({ estimate: 2, low: 2, high: 2, significant: true, over: 'runs' });
    // A fixed side (a baseline that kept no samples) is held, and said to be.
    const r = bootstrapRatio(2, noisy(8, 3, 30, 1, 0.1), 'median');
    expect(r.fixed).toBe('numerator');
    expect(r.estimate).toBeCloseTo(2, 1);
    // Nothing measured: no interval, never significant.
    expect(bootstrapRatio([[]], [[1]], 'median')).toMatchObject({ estimate: NaN, significant: false });
    expect(ratioText(bootstrapRatio([], [[1]], 'median'))).toBe('n/a');
  });

  it('a constant ratio (one run a side, as a time to first token with --speed_repeats 1) gives low = estimate = high, in order', () => {
    // 2.8223203995389934 < 2.822320399538994: the old interpolation rounded equal quantiles apart,
    // and the report validator refused the interval as out of order.
    for (const [a, b] of [[7.9017, 2.7997], [2.822320399538994 * 3, 3], [1 / 3, 0.1]] as const) {
      const r = bootstrapRatio([[a]], [[b]], 'median');
      expect(r.low).toBe(r.estimate);
      expect(r.high).toBe(r.estimate);
      expect(r.significant).toBe(r.estimate !== 1);
    }
  });

  it('its statistics are perf.ts\'s median and p90', () => {
    const rng = mulberry32(9);
    for (const n of [1, 2, 5, 10, 11, 64]) {
      const xs = Array.from({ length: n }, () => Math.round(rng() * 100) / 10);
      expect(statisticOf(Float64Array.from(xs), n, 'median')).toBe(median(xs));
      expect(statisticOf(Float64Array.from(xs), n, 'p90')).toBe(percentile(xs, 90));
      expect(statisticOf(Float64Array.from(xs), n, 'mean')).toBeCloseTo(xs.reduce((a, b) => a + b, 0) / n, 12);
    }
  });
});

describe('the regression gate', () => {
  it('fails only on a significant regression beyond --max_regression', () => {
    const base = noisy(10, 3, 60, 1, 0.05);
    // 2x slower, clearly: fails at 10%, passes at 100% (a 50% regression).
    const slow = bootstrapRatio(base, noisy(11, 3, 60, 2, 0.05), 'median');
    expect(regression(slow, 10)).toMatchObject({ significant: true, fails: true });
    expect(regression(slow, 10).regressionPct).toBeCloseTo(50, 0);
    expect(regression(slow, 100).fails).toBe(false);
    // 5% slower, significantly, but within the 10% allowed: passes.
    const bit = bootstrapRatio(noisy(12, 3, 200, 1, 0.005), noisy(13, 3, 200, 1.05, 0.005), 'median');
    expect(regression(bit, 10)).toMatchObject({ significant: true, fails: false });
    expect(regression(bit, 10).regressionPct).toBeGreaterThan(4);
    // A point estimate 13% slower from a handful of noisy steps, not significant: passes.
    const few = bootstrapRatio([[1.0, 1.3, 0.7, 1.2, 0.8]], [[1.15, 1.5, 0.8, 1.4, 0.9]], 'median');
    expect(regression(few, 10).regressionPct).toBeGreaterThan(10);
    expect(few.high).toBeGreaterThan(1);
    expect(regression(few, 10)).toMatchObject({ significant: false, fails: false });
    // Faster is never a regression.
    expect(regression(bootstrapRatio(noisy(14, 3, 60, 2, 0.05), base, 'median'), 0)).toMatchObject({ significant: false, fails: false });
  });

  function pipelineSpeed(steps: number[][]): PipelineSpeed {
    const all = steps.flat();
    return { pipeline: 'injected', ttftMs: 5, tpotMedianMs: median(all), tpotP90Ms: percentile(all, 90), decodeTokensPerSec: 1000 / (all.reduce((a, b) => a + b, 0) / all.length), prefillTokensPerSec: 1000, perPosition: steps[0]!.map((ms, i) => [10 + i, ms]), samples: samplesOf(steps) };
  }

  function compareReport(ref: number[][], cand: number[][]): CompareReport {
    const reference = pipelineSpeed(ref);
    const candidate = pipelineSpeed(cand);
    return {
      schema: COMPARE_SCHEMA,
      status: 'complete',
      createdAt: '2026-12-07T10:00:00.000Z',
      command: ['fusegen', 'compare'],
      model: { dir: '/models/opt', modelType: 'opt', candidateDir: '/models/opt' },
      settings: { dtype: 'float32', device: 'cpu', reference: 'transformersjs', useKernel: true, kernels: 'ort', batchSize: 1, numInputs: 0, minLength: 20, maxLength: 30 },
      tolerance: { atol: 1e-4, rtol: 1e-4, minTop1Agreement: 1, nearTie: 0, topN: 5, gate: true },
      environment: { node: 'v20', platform: 'linux-x64', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: null, executionProviders: {}, adapter: null },
      fusions: {},
      prompts: [],
      speed: { reference, candidate, decodeSpeedup: reference.tpotMedianMs / candidate.tpotMedianMs, intervals: speedIntervals(reference.samples!, candidate.samples!) },
      summary: { matches: 0, tolerated: 0, mismatches: 0, errored: 0 },
      gate: { exitCode: 0, reasons: [] },
    };
  }

  it('compare --baseline: a significant regression beyond the allowed fails; an insignificant or a smaller one passes', () => {
    const baseline = { file: 'base.json', report: compareReport(noisy(20, 3, 60, 1, 0.3), noisy(21, 3, 60, 1, 0.05)) };
    const check = (cand: number[][], max = 10) => baselineCheck(pipelineSpeed(cand), baseline, max)!;
    const slow = check(noisy(22, 3, 60, 2, 0.05));
    expect(slow.reason).toMatch(/^decode speed is \d\d\.\d% below the baseline's .*a significant regression of more than 10%$/);
    expect(slow.check.regressionPct).toBeGreaterThan(45);
    expect(slow.check.regressionPct).toBeLessThan(55);
    expect(slow.check).toMatchObject({ significant: true, file: 'base.json', maxRegressionPct: 10 });
    expect(check(noisy(22, 3, 60, 2, 0.05), 60).reason).toBeUndefined();
    // The same distribution measured again: no reason to fail, whatever the point figures say.
    const same = check(noisy(23, 3, 60, 1, 0.05));
    expect(same.reason).toBeUndefined();
    expect(same.check.significant).toBe(false);
    // A noisy rerun whose tokens/s fell more than 10% on the point figures: the old rule failed it, the interval does not.
    const noisyRerun = noisy(24, 2, 6, 1.25, 0.5);
    const old = (baseline.report.speed!.candidate.decodeTokensPerSec - pipelineSpeed(noisyRerun).decodeTokensPerSec) / baseline.report.speed!.candidate.decodeTokensPerSec;
    expect(old * 100).toBeGreaterThan(10);
    const r = check(noisyRerun);
    expect(r.check.speedRatio!.significant).toBe(false);
    expect(r.reason).toBeUndefined();
  });

  function benchRow(pipeline: BenchRow['pipeline'], steps: number[][]): BenchRow {
    const all = steps.flat();
    const st = { mean: all.reduce((a, b) => a + b, 0) / all.length, median: median(all), p90: percentile(all, 90), p99: percentile(all, 99) };
    return {
      pipeline,
      batch: 1,
      promptLength: 16,
      maxNewTokens: steps[0]!.length + 1,
      loadMs: 100,
      executionProviders: ['CPUExecutionProvider'],
      ttftMs: { mean: 5, median: 5, p90: 5, p99: 5 },
      tpotMs: st,
      e2eMs: { mean: 50, median: 50, p90: 50, p99: 50 },
      decodeTokensPerSec: 1000 / st.mean,
      prefillTokensPerSec: 3000,
      bandwidthGBps: 1,
      tflops: 0.01,
      peakRssMB: 300,
      perPosition: steps[0]!.map((ms, i): [number, number] => [17 + i, ms]),
      outlierPositions: [],
      samples: samplesOf(steps),
    };
  }

  function benchReport(rows: BenchRow[]): BenchReport {
    return {
      schema: 'fusegen.bench/1',
      status: 'complete',
      createdAt: '2026-12-07T10:00:00.000Z',
      model: { dir: '/models/gpt2', modelType: 'gpt2', parameters: 1e6 },
      device: 'cpu',
      dtype: 'float32',
      environment: { node: 'v20', platform: 'linux-x64', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: null },
      rows,
    };
  }

  it('bench --baseline: per point, only a significant regression beyond the allowed fails; the report says so and validates', () => {
    const baseline = { file: 'base-bench.json', report: benchReport([benchRow('reference', noisy(30, 3, 40, 2, 0.05)), benchRow('ort', noisy(31, 3, 40, 1, 0.05))]) };
    // This run: the reference as before, ort twice as slow; wgsl has no baseline point.
    const rows = [benchRow('reference', noisy(32, 3, 40, 2, 0.05)), benchRow('ort', noisy(33, 3, 40, 2, 0.05)), benchRow('wgsl', noisy(34, 3, 40, 0.5, 0.05))];
    addVersus(rows);
    const report = { ...benchReport(rows), gate: baselineGate(rows, baseline, 10) };
    expect(report.gate.exitCode).toBe(1);
    expect(report.gate.reasons).toHaveLength(1);
    expect(report.gate.reasons[0]).toMatch(/^ort b1 p16: decode speed is \d\d\.\d% below the baseline's/);
    expect(report.gate.baseline.rows.map((b) => [b.pipeline, b.significant, b.fails])).toEqual([['reference', false, false], ['ort', true, true]]);
    expect(report.gate.baseline.unmatched).toEqual(['wgsl b1 p16']);
    expect(baselineGate(rows, baseline, 60).exitCode).toBe(0);
    // Each later pipeline against the first: ort no different from the reference now, wgsl 4x faster.
    expect(rows[1]!.versus!.tpotSpeedup.significant).toBe(false);
    expect(rows[2]!.versus).toMatchObject({ pipeline: 'reference', tpotSpeedup: { significant: true } });
    expect(() => validateBenchReport(report)).not.toThrow();
    const lines = statsLines(report);
    expect(lines).toContain(`ort b1 p16 vs reference: time per output token ${ratioText(rows[1]!.versus!.tpotSpeedup)}`);
    expect(lines.find((l) => l.startsWith('ort b1 p16 vs reference'))).toMatch(/no significant difference/);
    expect(lines.find((l) => l.startsWith('reference b1 p16 against the baseline'))).toMatch(/no significant difference/);
    expect(lines.at(-1)).toMatch(/^gate: FAIL \(ort b1 p16: /);
    const html = renderBenchHtml(report);
    expect(html).toContain('id="gate"');
    expect(html).toContain('no significant difference');
    // The validator holds the gate to its intervals.
    const lying = JSON.parse(JSON.stringify(report)) as BenchReport;
    lying.gate!.baseline.rows[1]!.fails = false;
    lying.gate!.exitCode = 0;
    lying.gate!.reasons = [];
    expect(() => validateBenchReport(lying)).toThrow(/gate\.baseline\.rows\[1\]\.fails: is false but a significant regression/);
  });
});

describe('the speed verdict in words', () => {
  function report(ref: number[][], cand: number[][]): CompareReport {
    const r = JSON.parse(JSON.stringify(COMPARE_FIXTURE)) as CompareReport;
    const side = (pipeline: string, steps: number[][]): PipelineSpeed => ({ ...r.speed!.reference, pipeline, tpotMedianMs: median(steps.flat()), samples: samplesOf(steps) });
    const reference = side('reference', ref);
    const candidate = side('injected', cand);
    r.speed = { reference, candidate, decodeSpeedup: reference.tpotMedianMs / candidate.tpotMedianMs, intervals: speedIntervals(reference.samples!, candidate.samples!) };
    return r;
  }

  it('console and page say "no significant difference" where the interval includes 1, the speedup with its interval otherwise', () => {
    // A point ratio of 0.9x from noise: before, `decode speedup: 0.90x` as if it were a slowdown.
    const same = report(noisy(40, 2, 8, 1, 0.5), noisy(41, 2, 8, 1, 0.5));
    expect(() => validateCompareReport(same)).not.toThrow();
    const line = summaryTable(same).find((l) => l.startsWith('decode speedup:'));
    expect(line).toMatch(/^decode speedup: no significant difference \(\d\.\d\dx, 95% CI \d\.\d\d-\d\.\d\dx\)$/);
    const page = renderCompareHtml(same);
    expect(page).toMatch(/<div class="speedup no-difference">decode speedup: <b>no significant difference<\/b>/);
    expect(page).not.toMatch(/<div class="speedup[^"]*">decode speedup <b>\d/);

    const twice = report(noisy(42, 3, 60, 2, 0.1), noisy(43, 3, 60, 1, 0.1));
    expect(summaryTable(twice).find((l) => l.startsWith('decode speedup:'))).toMatch(/^decode speedup: [12]\.\d\dx \(95% CI 1\.\d\d-2\.\d\dx\)$/);
    expect(renderCompareHtml(twice)).toMatch(/<div class="speedup significant">decode speedup <b>[12]\.\d\d×<\/b>/);
  });

  it('the validator holds intervals to their samples and to 1', () => {
    const r = report(noisy(44, 3, 60, 2, 0.1), noisy(45, 3, 60, 1, 0.1));
    const noSamples = JSON.parse(JSON.stringify(r)) as CompareReport;
    delete noSamples.speed!.candidate.samples;
    expect(() => validateCompareReport(noSamples)).toThrow('speed.candidate.samples: is required with speed.intervals');
    const wrong = JSON.parse(JSON.stringify(r)) as CompareReport;
    wrong.speed!.intervals!.tpotMedian.significant = false;
    expect(() => validateCompareReport(wrong)).toThrow(/speed\.intervals\.tpotMedian\.significant: is false but the interval .* excludes 1/);
  });
});

/** Every report under a directory, recursively. */
function reportsUnder(dir: string, suffix: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? reportsUnder(p, suffix) : p.endsWith(suffix) ? [p] : [];
  });
}

describe('old reports stay readable', () => {
  it('every bench and compare report in bench/results validates (written before samples and intervals)', () => {
    const bench = reportsUnder('bench/results', '-bench.json');
    const compare = reportsUnder('bench/results', '-compare.json');
    expect(bench.length).toBeGreaterThan(10);
    for (const f of bench) expect(() => validateBenchReport(JSON.parse(readFileSync(f, 'utf8'))), f).not.toThrow();
    for (const f of compare) expect(() => validateCompareReport(JSON.parse(readFileSync(f, 'utf8'))), f).not.toThrow();
  });
});

/** A compare report to dress with speed figures. */
const COMPARE_FIXTURE: CompareReport = {
  schema: COMPARE_SCHEMA,
  status: 'complete',
  createdAt: '2026-12-07T10:00:00.000Z',
  command: ['fusegen', 'compare'],
  model: { dir: '/models/opt', modelType: 'opt', candidateDir: '/models/opt' },
  settings: { dtype: 'float32', device: 'cpu', useKernel: true, kernels: 'ort', batchSize: 1, numInputs: 0, minLength: 20, maxLength: 30 },
  tolerance: { atol: 1e-4, rtol: 1e-4, minTop1Agreement: 1, nearTie: 0, topN: 5, gate: true },
  environment: { node: 'v20', platform: 'linux-x64', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: null, executionProviders: {}, adapter: null },
  fusions: {},
  prompts: [],
  speed: {
    reference: { pipeline: 'reference', ttftMs: 5, tpotMedianMs: 1, tpotP90Ms: 1.2, decodeTokensPerSec: 1000, prefillTokensPerSec: 2000, perPosition: [[10, 1]] },
    candidate: { pipeline: 'injected', ttftMs: 5, tpotMedianMs: 1, tpotP90Ms: 1.2, decodeTokensPerSec: 1000, prefillTokensPerSec: 2000, perPosition: [[10, 1]] },
    decodeSpeedup: 1,
  },
  summary: { matches: 0, tolerated: 0, mismatches: 0, errored: 0 },
  gate: { exitCode: 0, reasons: [] },
};
