/**
 * The bench HTML page and the dashboard over a reports directory: synthetic reports (with
 * hostile strings and a malformed file), as text and loaded in headless Chromium (Debian's
 * /usr/bin/chromium through playwright-core, network blocked).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openOffline } from './helpers.js';
import type { BenchReport, BenchRow } from '../src/report/bench-report.js';
import { speedIntervals } from '../compare/metrics.js';
import { mulberry32, ratioText } from '../src/report/speed-stats.js';
import { main } from '../src/cli/main.js';
import { renderBenchHtml } from '../src/report/bench-html.js';
import { COMPARE_SCHEMA, type CompareReport } from '../src/report/compare-report.js';
import { buildDashboard, loadReports } from '../src/report/dashboard.js';
import { renderCompareHtml } from '../src/report/html.js';

const XSS = '<script>window.__pwned=1</script>';
const EVIL_DIR = `/models/evil${XSS}<img src=x onerror="window.__pwned=2">"'&`;
/** The page names a model by its directory's last component. */
const EVIL_NAME = `script><img src=x onerror="window.__pwned=2">"'&`;

function st(median: number) {
  return { mean: median * 1.02, median, p90: median * 1.2, p99: median * 1.5 };
}

function row(pipeline: BenchRow['pipeline'], batch: number, promptLength: number, tpot: number): BenchRow {
  const perPosition = Array.from({ length: 12 }, (_, i): [number, number] => [promptLength + i + 1, tpot * (1 + i / 50) + (i === 7 ? tpot * 4 : 0)]);
  return {
    pipeline,
    batch,
    promptLength,
    maxNewTokens: 13,
    loadMs: 420,
    executionProviders: ['CPUExecutionProvider', `<b>EP</b>`],
    ttftMs: st(tpot * 3),
    tpotMs: st(tpot),
    e2eMs: st(tpot * 15),
    decodeTokensPerSec: (1000 / tpot) * batch,
    prefillTokensPerSec: (1000 / (tpot * 3)) * promptLength * batch,
    bandwidthGBps: 1.5,
    tflops: 0.02,
    peakRssMB: 512,
    perPosition,
    outlierPositions: [promptLength + 8],
  };
}

function bench(createdAt: string, dir: string, speed: number): BenchReport {
  const rows: BenchRow[] = [];
  for (const p of ['reference', 'ort'] as const) for (const b of [1, 4]) for (const l of [8, 32]) rows.push(row(p, b, l, (p === 'ort' ? 2 : 3) / speed + l / 100));
  return {
    schema: 'fusegen.bench/1',
    status: 'complete',
    createdAt,
    model: { dir, modelType: 'gpt2', parameters: 124_000_000 },
    device: 'cpu',
    dtype: 'float32',
    environment: { node: 'v20.19.0', platform: 'linux-x64', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: `abc${XSS}` },
    rows,
  };
}

function compare(createdAt: string, dir: string, speedup: number, mismatches: number): CompareReport {
  const sp = (pipeline: string, tpot: number) => ({ pipeline, ttftMs: tpot * 2, tpotMedianMs: tpot, tpotP90Ms: tpot * 1.1, decodeTokensPerSec: 1000 / tpot, prefillTokensPerSec: 4000 / tpot, perPosition: [[9, tpot], [10, tpot * 1.1]] as Array<[number, number]> });
  return {
    schema: COMPARE_SCHEMA,
    status: 'complete',
    createdAt,
    command: ['fusegen', 'compare'],
    model: { dir, modelType: 'opt', candidateDir: '/cache/x' },
    settings: { dtype: 'float32', device: 'cpu', useKernel: true, kernels: 'ort', batchSize: 1, numInputs: 4, minLength: 8, maxLength: 32 },
    tolerance: { atol: 0.25, rtol: 0.03, minTop1Agreement: 0.97, nearTie: 0.5, topN: 5, gate: true },
    environment: { node: 'v20', platform: 'linux', fusegen: '0.1.0', onnxruntimeNode: '1.30.0', transformersJs: '4.3.2', gitCommit: null, executionProviders: {}, adapter: null },
    fusions: {},
    prompts: [],
    speed: { reference: sp('transformers.js', 5), candidate: sp('ort', 5 / speedup), decodeSpeedup: speedup },
    summary: { matches: 4 - mismatches, tolerated: 0, mismatches, errored: 0 },
    gate: { exitCode: mismatches ? 1 : 0, reasons: [] },
  };
}

let reports: string;
const BENCH_DATES = ['2025-03-01T10:00:00.000Z', '2025-03-04T10:00:00.000Z', '2025-03-09T10:00:00.000Z'];
const COMPARE_DATES = ['2025-03-02T10:00:00.000Z', '2025-03-08T10:00:00.000Z'];

beforeAll(() => {
  reports = mkdtempSync(join(tmpdir(), 'fusegen-dashboard-'));
  BENCH_DATES.forEach((d, i) => {
    const r = bench(d, i === 1 ? EVIL_DIR : '/models/gpt2', 1 + i * 0.2);
    const stem = join(reports, `2025030${i}-gpt2-bench`);
    writeFileSync(`${stem}.json`, JSON.stringify(r));
    if (i !== 2) writeFileSync(`${stem}.html`, renderBenchHtml(r));
  });
  mkdirSync(join(reports, 'nested'));
  COMPARE_DATES.forEach((d, i) => {
    const r = compare(d, '/models/opt', 1.5 + i, i);
    const stem = join(reports, 'nested', `2025030${i}-opt-compare`);
    writeFileSync(`${stem}.json`, JSON.stringify(r));
    writeFileSync(`${stem}.html`, renderCompareHtml(r));
  });
  writeFileSync(join(reports, '20250305-broken-bench.json'), '{"schema": "fusegen.bench/1", "rows": [');
  writeFileSync(join(reports, '20250306-other-compare.json'), JSON.stringify({ schema: 'fusegen.compare/0', createdAt: '2025-03-06T00:00:00Z' }));
  // Not reports: ignored, not skipped.
  writeFileSync(join(reports, '20250300-gpt2-bench-bencher.json'), '{}');
  writeFileSync(join(reports, 'notes.json'), 'not json');
});
afterAll(() => {
  rmSync(reports, { recursive: true, force: true });
});

describe('buildDashboard (as text)', () => {
  it('lists the runs, skips and names the bad files, escapes strings', () => {
    const data = loadReports(reports);
    expect(data.runs.map((r) => `${r.kind} ${r.createdAt}`)).toEqual([
      `bench ${BENCH_DATES[0]}`,
      `compare ${COMPARE_DATES[0]}`,
      `bench ${BENCH_DATES[1]}`,
      `compare ${COMPARE_DATES[1]}`,
      `bench ${BENCH_DATES[2]}`,
    ]);
    expect(data.skipped.map((s) => s.file.slice(reports.length + 1)).sort()).toEqual(['20250305-broken-bench.json', '20250306-other-compare.json']);
    expect(data.runs.filter((r) => r.html === null)).toHaveLength(1);

    const html = buildDashboard(reports);
    expect(html).toContain('20250305-broken-bench.json');
    expect(html).toContain('20250306-other-compare.json');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;script&gt;');
    expect(html).toContain('href="nested/20250300-opt-compare.html"');
    expect(html).toContain('href="20250300-gpt2-bench.html"');
  });

  it('renders the bench page with every string escaped', () => {
    const html = renderBenchHtml(bench(BENCH_DATES[0]!, EVIL_DIR, 1));
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<b>EP');
    expect(html).toContain('&lt;b&gt;EP&lt;/b&gt;');
  });

  it('fusegen dashboard writes the page and prints its path; exit 2 on a missing directory', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const target = join(reports, 'site', 'dash.html');
    expect(await main(['dashboard', '--report_dir', reports, '--out', target], { out: (l) => out.push(l), err: (l) => err.push(l) })).toBe(0);
    expect(out).toEqual([target]);
    const page = readFileSync(target, 'utf8');
    expect(page).toContain('href="../nested/20250301-opt-compare.html"');
    rmSync(join(reports, 'site'), { recursive: true });
    const err2: string[] = [];
    expect(await main(['dashboard', '--report_dir', join(reports, 'missing')], { out: () => {}, err: (l) => err2.push(l) })).toBe(2);
    expect(err2).toHaveLength(1);
    expect(err2[0]).toContain('missing');
  });
});

describe('the dashboard and the speed statistics', () => {
  it('says "no significant difference" for a compare whose interval includes 1, the speedup with its interval otherwise; skips an invalid bench naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-dashboard-stats-'));
    const steps = (seed: number, ms: number, spread: number) => {
      const rng = mulberry32(seed);
      return Array.from({ length: 3 }, () => ({ firstTokenMs: 5, decodeStepMs: Array.from({ length: 30 }, () => ms * (1 + spread * (2 * rng() - 1))), totalMs: 40 }));
    };
    const withIntervals = (createdAt: string, ref: ReturnType<typeof steps>, cand: ReturnType<typeof steps>) => {
      const r = compare(createdAt, '/models/opt', 1, 0);
      r.speed = { ...r.speed!, reference: { ...r.speed!.reference, samples: ref }, candidate: { ...r.speed!.candidate, samples: cand }, intervals: speedIntervals(ref, cand) };
      return r;
    };
    const same = withIntervals(COMPARE_DATES[0]!, steps(1, 5, 0.5), steps(2, 5, 0.5));
    const faster = withIntervals(COMPARE_DATES[1]!, steps(3, 5, 0.05), steps(4, 2.5, 0.05));
    expect(same.speed!.intervals!.tpotMedian.significant).toBe(false);
    expect(faster.speed!.intervals!.tpotMedian.significant).toBe(true);
    writeFileSync(join(dir, '1-opt-compare.json'), JSON.stringify(same));
    writeFileSync(join(dir, '2-opt-compare.json'), JSON.stringify(faster));
    const bad = bench(BENCH_DATES[0]!, '/models/gpt2', 1);
    (bad.rows[0] as unknown as Record<string, unknown>)['tpotMs'] = 'fast';
    writeFileSync(join(dir, '3-gpt2-bench.json'), JSON.stringify(bad));
    const data = loadReports(dir);
    expect(data.runs).toHaveLength(2);
    expect(data.skipped.map((x) => x.reason)).toEqual(['invalid bench report: rows[0].tpotMs: must be object']);
    const html = buildDashboard(dir);
    expect(html).toContain(`speedup ${ratioText(same.speed!.intervals!.tpotMedian, '×', '–')}`);
    expect(html).toMatch(/speedup no significant difference \(\d\.\d\d×, 95% CI \d\.\d\d–\d\.\d\d×\)/);
    expect(html).toMatch(/speedup [12]\.\d\d× \(95% CI \d\.\d\d–\d\.\d\d×\)/);
  });
});

describe('the bench and dashboard pages in headless Chromium', () => {
  let context: BrowserContext;
  let closeBrowser: () => Promise<void>;
  const network: string[] = [];

  beforeAll(async () => {
    ({ context, close: closeBrowser } = await launchChromium());
  });
  afterAll(async () => {
    await closeBrowser?.();
  });

  async function open(file: string): Promise<{ page: Page; errors: string[] }> {
    return openOffline(context, file, network);
  }

  async function noHarm(page: Page): Promise<void> {
    expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(await page.evaluate(() => document.querySelectorAll('script, img, iframe, object, embed, svg svg, [onload], [onerror]').length)).toBe(0);
  }

  it('shows the dashboard: all runs, trend charts with lines, skipped files, links', async () => {
    const file = join(reports, 'dashboard.html');
    writeFileSync(file, buildDashboard(reports));
    const { page, errors } = await open(file);
    expect(await page.locator('table.runs tr.run').count()).toBe(5);
    expect(await page.locator('table.runs tr.run.bench').count()).toBe(3);
    expect(await page.locator('table.runs tr.run.compare').count()).toBe(2);
    expect(await page.locator('table.runs').textContent()).toContain(EVIL_NAME);
    expect(await page.locator('table.runs td.model span').evaluateAll((els) => els.map((e) => e.getAttribute('title')))).toContain(EVIL_DIR);
    for (const cls of ['decode-b1', 'decode-bmax', 'tpot-b1', 'tpot-bmax']) {
      const d = await page.locator(`svg.chart.${cls} path.series`).evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
      expect(d, cls).toHaveLength(2); // reference and ort
      for (const x of d) expect(x).toMatch(/^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+){2}$/);
    }
    const speed = await page.locator('svg.chart.speedup path.series').evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
    expect(speed).toHaveLength(1);
    expect(speed[0]).toMatch(/^M[\d.]+ [\d.]+L[\d.]+ [\d.]+$/);
    expect(await page.locator('svg.chart.verdicts path.series').count()).toBe(4);
    expect(await page.locator('#skipped li').count()).toBe(2);
    expect(await page.locator('a.report-link').count()).toBe(4);
    // The links lead to the pages.
    const hrefs = await page.locator('a.report-link').evaluateAll((els) => els.map((e) => (e as HTMLAnchorElement).href));
    for (const h of hrefs) expect(existsSync(new URL(h))).toBe(true);
    await noHarm(page);
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
  });

  it('shows a bench page: table, throughput lines, TPOT bars, per-row latency with cliffs', async () => {
    const file = join(reports, '20250301-gpt2-bench.html');
    const { page, errors } = await open(file);
    expect(await page.locator('table.rows-table tbody tr').count()).toBe(8);
    expect(await page.locator('h1 .model-name').textContent()).toBe(EVIL_NAME);
    expect(await page.locator('.kv code').first().textContent()).toBe(EVIL_DIR);
    const lines = await page.locator('svg.throughput path.series').evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
    expect(lines).toHaveLength(4); // 2 pipelines x 2 prompt lengths, over 2 batch sizes
    for (const d of lines) expect(d).toMatch(/^M[\d.]+ [\d.]+L[\d.]+ [\d.]+$/);
    const bars = await page.locator('svg.tpot-bars rect.bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('width'))));
    expect(bars).toHaveLength(16);
    for (const w of bars) expect(w).toBeGreaterThan(0);
    expect(await page.locator('svg.position-chart').count()).toBe(8);
    const pos = await page.locator('svg.position-chart path.series').evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
    for (const d of pos) expect(d.split('L')).toHaveLength(12);
    expect(await page.locator('svg.position-chart line.marker.cliff').count()).toBe(8);
    await noHarm(page);
    expect(errors).toEqual([]);
    expect(network).toEqual([]);
  });
});
