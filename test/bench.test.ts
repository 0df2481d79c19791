/** The bench command: a small sweep on the tiny fixture, its report and dashboard exports. */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { promptOfLength, runBench, stats, type BenchOptions, type BenchProgress, type BenchReport } from '../bench/run.js';
import { profileLine, summarizeRuns } from '../bench/op-profile.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { readOrtProfile } from '../src/runtime/ort.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { interruptTwice } from './helpers.js';
import { main } from '../src/cli/main.js';
import { writeBenchReports } from '../src/cli/bench.js';
import { loadReports } from '../src/report/dashboard.js';
import { reportTimestamp } from '../src/report/write.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import { ratioText } from '../src/report/speed-stats.js';

async function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['bench', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

describe('bench', () => {
  it('sweeps pipelines x batch sizes x prompt lengths side by side and writes the reports', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
    const r = await cli(['--model', tinyModelDir('gpt2'), '--batch_sizes', '1,3', '--prompt_lengths', '5,20', '--max_new_tokens', '6', '--repeats', '2', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(r.err.filter((l) => /^\[\d+\/8\]/.test(l))).toHaveLength(8); // progress lines
    const files = readdirSync(dir);
    const report = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
    expect(report.rows.map((x) => `${x.pipeline}/${x.batch}/${x.promptLength}`)).toEqual(['reference/1/5', 'reference/1/20', 'reference/3/5', 'reference/3/20', 'ort/1/5', 'ort/1/20', 'ort/3/5', 'ort/3/20']);
    for (const row of report.rows) {
      expect(row.tpotMs.median).toBeGreaterThan(0);
      expect(row.tpotMs.median).toBeLessThanOrEqual(row.tpotMs.p90);
      expect(row.tpotMs.p90).toBeLessThanOrEqual(row.tpotMs.p99);
      // 6 new tokens: 5 decode steps at positions prompt+1 .. prompt+5.
      expect(row.perPosition.map(([p]) => p)).toEqual([1, 2, 3, 4, 5].map((i) => row.promptLength + i));
      expect(row.peakRssMB).toBeGreaterThan(10);
      // The measured runs' raw timings are kept: 2 repeats of 5 decode steps.
      expect(row.samples!.map((x) => x.decodeStepMs.length)).toEqual([5, 5]);
      expect(Math.min(...row.samples!.flatMap((x) => x.decodeStepMs))).toBeGreaterThan(0);
    }
    // Each ort row against the reference at its point, with an interval; the console says it in words.
    for (const row of report.rows.filter((x) => x.pipeline === 'ort')) {
      const v = row.versus!;
      expect(v.pipeline).toBe('reference');
      expect(v.tpotSpeedup.low).toBeLessThanOrEqual(v.tpotSpeedup.high);
      expect(r.out).toContain(`ort b${row.batch} p${row.promptLength} vs reference: time per output token ${ratioText(v.tpotSpeedup)}`);
    }
    expect(report.rows.filter((x) => x.versus)).toHaveLength(4);
    expect(() => validateBenchReport(report)).not.toThrow();
    const smaller = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-smaller-is-better.json'))!), 'utf8')) as Array<{ name: string; unit: string; value: number }>;
    expect(smaller).toHaveLength(16);
    expect(smaller[0]).toMatchObject({ unit: 'ms', name: expect.stringContaining('gpt2 cpu float32 reference b1 p5') });
    const bencher = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-bencher.json'))!), 'utf8')) as Record<string, Record<string, { value: number }>>;
    expect(Object.keys(bencher)).toHaveLength(8);
    expect(bencher['gpt2/cpu/float32/ort/b3/p20']!['decode-tokens-per-s']!.value).toBeGreaterThan(0);
  });

  it('draws a progress bar on a terminal: every run counted (warm-ups and profiled runs too), with the time left and the point', async () => {
    const frames: string[] = [];
    const terminal = Object.assign(new Writable({ write: (chunk, _enc, done) => (frames.push(String(chunk)), done()) }), { isTTY: true, columns: 160, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
    const err: string[] = [];
    const args = ['bench', '--model', tinyModelDir('opt'), '--pipelines', 'ort', '--batch_sizes', '1,2', '--prompt_lengths', '4', '--max_new_tokens', '3', '--repeats', '2', '--profile', '--report_dir', dir];
    expect(await main(args, { out: () => {}, err: (l) => err.push(l), terminal })).toBe(0);
    expect(err).toEqual([]); // the bar replaces the progress lines
    const text = frames.join('');
    // 2 points x (warm-up + 2 runs), then 2 profiled runs a point: 10 runs.
    const counts = [...text.matchAll(/run (\d+)\/(\d+)/g)].filter((m) => m[2] === '10').map((m) => Number(m[1]));
    expect(counts.at(-1)).toBe(10);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(text).toContain('[1/2] ort batch 1 prompt 4, warm-up');
    expect(text).toContain('[2/2] ort batch 2 prompt 4, profiled');
    expect(text).toMatch(/\d+s left/);
  });

  it('reports each run with the point it belongs to, profiled runs too', async () => {
    const events: BenchProgress[] = [];
    const o: BenchOptions = { ckpt: openCheckpoint(tinyModelDir('opt')), device: 'cpu', dtype: 'float32', pipelines: ['ort'], batchSizes: [1, 2], promptLengths: [4], maxNewTokens: 3, repeats: 1, profile: true };
    await runBench(o, (p) => events.push(p), () => false);
    expect(events.map((e) => `${e.run}/${e.runs} ${e.point}/${e.points} ${e.step}`)).toEqual([
      '1/8 1/2 warm-up', '2/8 1/2 run 1/1', '3/8 2/2 warm-up', '4/8 2/2 run 1/1',
      '5/8 1/2 profile warm-up', '6/8 1/2 profiled', '7/8 2/2 profile warm-up', '8/8 2/2 profiled',
    ]);
  });

  it('profiles the ORT pipelines per op with --profile: the prompt step apart, decode steps per node role', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
    const r = await cli(['--model', tinyModelDir('opt'), '--batch_sizes', '2', '--prompt_lengths', '6', '--max_new_tokens', '5', '--repeats', '1', '--profile', '--report_dir', dir]);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(r.err.filter((l) => l.startsWith('profiling'))).toEqual(['profiling reference batch 2 prompt 6 per op', 'profiling ort batch 2 prompt 6 per op']);
    const files = readdirSync(dir);
    const report = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
    const [ref, ort] = report.rows;
    for (const row of [ref!, ort!]) {
      const { prefill, decode } = row.opProfile!;
      expect(prefill.steps).toBe(1);
      expect(decode.steps).toBe(4); // 5 new tokens: the prompt's step, then 4 decode steps
      expect(decode.hostUs).toBeCloseTo(decode.ops.reduce((a, t) => a + t.hostUs, 0), 6);
      expect(decode.hostUs).toBeLessThanOrEqual(decode.wallUs);
      expect(decode.gpuUs).toBe(0); // the CPU EP has no GPU programs
      const keys = decode.ops.map((t) => t.hostUs);
      expect(keys).toEqual([...keys].sort((a, b) => b - a));
    }
    // Every layer's copy of a node is one role; tiny OPT has 2 layers.
    const gqa = ort!.opProfile!.decode.ops.find((t) => t.role === '/model/layers.*/attn/GroupQueryAttention');
    expect(gqa).toMatchObject({ op: 'GroupQueryAttention', calls: 2 });
    expect(ref!.opProfile!.decode.ops.some((t) => t.op === 'GroupQueryAttention')).toBe(false);
    expect(ref!.opProfile!.decode.ops.find((t) => t.role === '/model/layers.*/attn/q_proj/MatMul')).toMatchObject({ op: 'MatMul', calls: 2 });
    expect(r.out.filter((l) => / decode step .* ms wall/.test(l))).toHaveLength(2);
    const html = readFileSync(join(dir, files.find((f) => f.endsWith('-bench.html'))!), 'utf8');
    expect(html).toContain('id="profiles"');
    expect(html).toContain('/model/layers.*/attn/GroupQueryAttention');
  });

  it('reads an ORT profile into runs, GPU programs to the run they started in, and sums them per role', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-profile-'));
    const node = (name: string, op: string, ts: number, dur: number) => ({ cat: 'Node', name: `${name}_kernel_time`, ts, dur, args: { op_name: op, provider: 'WebGpuExecutionProvider' } });
    const api = (name: string, ts: number, dur: number) => ({ cat: 'Api', name, ts, dur });
    const events = [
      { cat: 'Session', name: 'model_run', ts: 100, dur: 50 },
      { cat: 'Session', name: 'model_run', ts: 300, dur: 40 },
      node('/model/layers.0/mlp/up_proj/MatMul', 'MatMul', 110, 4),
      node('/model/layers.1/mlp/up_proj/MatMul', 'MatMul', 120, 6),
      node('/lm_head/Gemm', 'Gemm', 130, 2),
      api('/model/layers.0/mlp/up_proj/MatMul&MatMul&MatMul', 115, 30),
      api('/model/layers.1/mlp/up_proj/MatMul&MatMul&MatMul', 200, 20), // after run 0 ended: still its work
      node('/model/layers.0/mlp/up_proj/MatMul', 'MatMul', 310, 8),
      api('/lm_head/Gemm&Gemm&GemmVec4', 320, 10),
      { cat: 'Session', name: 'session_initialization', ts: 0, dur: 90 },
    ];
    const file = join(dir, 'run.json');
    writeFileSync(file, JSON.stringify(events));
    const runs = readOrtProfile(file);
    expect(runs.map((x) => [x.wallUs, x.nodes.length, x.kernels.length])).toEqual([[50, 3, 2], [40, 1, 1]]);
    expect(runs[1]!.kernels[0]).toEqual({ node: '/lm_head/Gemm', op: 'Gemm', program: 'GemmVec4', us: 10 });
    const p = summarizeRuns(runs);
    expect(p).toMatchObject({ steps: 2, wallUs: 45, hostUs: 10, gpuUs: 30 });
    expect(p.ops[0]).toEqual({ role: '/model/layers.*/mlp/up_proj/MatMul', op: 'MatMul', calls: 1.5, hostUs: 9, gpuUs: 25 });
    expect(p.programs.map((x) => [x.program, x.gpuUs])).toEqual([['MatMul/MatMul', 25], ['Gemm/GemmVec4', 5]]);
    // Ranked by GPU time, and separately by host time: the LM head has 1 us of host time a step, the matmul 9.
    expect(profileLine(p, 2)).toBe('step 0.045 ms wall, ops 0.010 ms host, 0.030 ms GPU; GPU: /model/layers.*/mlp/up_proj/MatMul 25 us (83%), /lm_head/Gemm 5 us (17%); host: /model/layers.*/mlp/up_proj/MatMul 9 us (90%), /lm_head/Gemm 1 us (10%)');
  });

  it('--accuracy_level reaches the quantized ORT graph (default 4 on the CPU) and its rows; refused for float dtypes', async () => {
    const levels: Array<number | undefined> = [];
    for (const extra of [[], ['--accuracy_level', '0']]) {
      const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
      const r = await cli(['--model', tinyModelDir('opt'), '--dtype', 'int4', '--pipelines', 'reference,ort', '--max_new_tokens', '3', '--repeats', '1', ...extra, '--report_dir', dir]);
      expect(r.code, r.err.join('\n')).toBe(0);
      const report = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
      expect(report.rows[0]!.accuracyLevel).toBeUndefined(); // the float32 reference
      levels.push(report.rows[1]!.accuracyLevel);
    }
    expect(levels).toEqual([4, 0]);
    const bad = await cli(['--model', tinyModelDir('opt'), '--accuracy_level', '4']);
    expect(bad.code).toBe(2);
    expect(bad.err).toEqual(['error: --accuracy_level: applies to --dtype int8 or int4, not float32']);
  });

  it('--baseline: fails on a significant regression beyond --max_regression, passes within it; refuses a baseline of another dtype', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
    const args = ['--model', tinyModelDir('opt'), '--pipelines', 'ort', '--prompt_lengths', '4', '--max_new_tokens', '12', '--repeats', '3', '--report_dir', dir];
    const first = await cli(args);
    expect(first.code, first.err.join('\n')).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
    // A baseline ten times faster than this machine: every step a tenth.
    const row = report.rows[0]!;
    const fast: BenchReport = { ...report, rows: [{ ...row, tpotMs: { ...row.tpotMs, median: row.tpotMs.median / 10 }, samples: row.samples!.map((x) => ({ ...x, decodeStepMs: x.decodeStepMs.map((ms) => ms / 10) })) }] };
    const baseFile = join(dir, 'fast-baseline.json');
    writeFileSync(baseFile, JSON.stringify(fast));
    const slow = await cli([...args, '--baseline', baseFile]);
    expect(slow.code).toBe(1);
    expect(slow.out.find((l) => l.startsWith('ort b1 p4 against the baseline: decode speed 0.'))).toMatch(/ FAIL$/);
    expect(slow.out.at(-2)).toMatch(/^gate: FAIL \(ort b1 p4: decode speed is \d+\.\d% below the baseline's .*a significant regression of more than 10%\)$/);
    const lenient = await cli([...args, '--baseline', baseFile, '--max_regression', '100']);
    expect(lenient.code).toBe(0);
    expect(lenient.out.some((l) => l.startsWith('gate: pass'))).toBe(true);
    const gated = readdirSync(dir).filter((f) => f.endsWith('-bench.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchReport).filter((x) => x.gate);
    expect(gated.map((x) => x.gate!.exitCode).sort()).toEqual([0, 1]);
    // Another dtype measures something else; a compare report is not a bench report: one line, exit 2, no run.
    writeFileSync(join(dir, 'int8.json'), JSON.stringify({ ...report, dtype: 'int8' }));
    const other = await cli([...args, '--baseline', join(dir, 'int8.json')]);
    expect(other.code).toBe(2);
    expect(other.err).toEqual([`error: ${join(dir, 'int8.json')}: a bench of opt on cpu in int8; this run is opt on cpu in float32`]);
    writeFileSync(join(dir, 'not-bench.json'), JSON.stringify({ ...report, schema: 'fusegen.compare/1' }));
    const wrong = await cli([...args, '--baseline', join(dir, 'not-bench.json')]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toEqual([`error: ${join(dir, 'not-bench.json')}: not a bench report: invalid bench report: schema: must be "fusegen.bench/1"`]);
  });

  it('refuses wgsl off webgpu, and --model with --preset', async () => {
    const a = await cli(['--pipelines', 'wgsl']);
    expect(a.code).toBe(2);
    expect(a.err[0]).toContain('--pipelines');
    const b = await cli(['--model', tinyModelDir('opt'), '--preset', 'gpt2']);
    expect(b.code).toBe(2);
    expect(b.err[0]).toContain('--preset');
  });

  it('builds prompts of exact lengths and summarizes with mean/median/p90/p99', () => {
    expect(promptOfLength([1, 2, 3], 7, 1)).toEqual([2, 3, 1, 2, 3, 1, 2]);
    const s = stats([1, 2, 3, 4, 100]);
    expect(s).toEqual({ mean: 22, median: 3, p90: 100, p99: 100 });
  });
});

describe('bench reports on disk', () => {
  it('two reports of the same millisecond into one directory both survive, each with its five files', async () => {
    const o: BenchOptions = { ckpt: openCheckpoint(tinyModelDir('opt')), device: 'cpu', dtype: 'float32', pipelines: ['ort'], batchSizes: [1], promptLengths: [4], maxNewTokens: 3, repeats: 1, profile: false };
    const report = await runBench(o, () => {}, () => false);
    const second: BenchReport = { ...report, rows: [...report.rows, ...report.rows] };
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-'));
    const a = writeBenchReports(report, dir, o.ckpt.dir);
    const b = writeBenchReports(second, dir, o.ckpt.dir);
    expect(a.json).not.toBe(b.json);
    const names = readdirSync(dir).sort();
    expect(names).toHaveLength(10);
    const stamp = reportTimestamp(report.createdAt);
    for (const n of names) expect(n).toMatch(new RegExp(`^${stamp}-[0-9a-f]{6}-tiny-opt-bench(\\.json|\\.html|-smaller-is-better\\.json|-bigger-is-better\\.json|-bencher\\.json)$`));
    expect(JSON.parse(readFileSync(a.json, 'utf8'))).toEqual(report);
    expect(JSON.parse(readFileSync(b.json, 'utf8'))).toEqual(second);
    expect(loadReports(dir).runs.map((r) => r.file).sort()).toEqual([a.json, b.json].sort());
  });

  it('a second Ctrl-C stops at once and still writes the points that finished, marked interrupted (child process)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusegen-bench-sigint-'));
    // Point 1 (batch 1) is short; point 2 (batch 32, 101 runs of 64 tokens) takes far longer than the signals.
    const args = ['bench', '--model', tinyModelDir('opt'), '--pipelines', 'ort', '--batch_sizes', '1,32', '--prompt_lengths', '4', '--max_new_tokens', '64', '--repeats', '100', '--report_dir', dir];
    // Ctrl-C once point 1 finished and point 2 is under way.
    const { code, stderr, secondMs } = await interruptTwice(args, { stream: 'stderr', re: /\[2\/2\] ort batch 32 prompt 4/ });
    expect(code).toBe(130);
    expect(secondMs).toBeLessThan(10_000);
    expect(stderr).toMatch(/interrupted: 1 finished point written to .*-bench\.json/);
    const names = readdirSync(dir);
    expect(names.filter((n) => !n.startsWith('.'))).toHaveLength(5); // no temp files either
    expect(names.filter((n) => n.startsWith('.'))).toEqual([]);
    const loaded = loadReports(dir);
    expect(loaded.skipped).toEqual([]);
    expect(loaded.runs).toHaveLength(1);
    const report = loaded.runs[0]!.report as BenchReport;
    expect(report.status).toBe('interrupted');
    expect(report.rows.map((r) => `${r.pipeline}/${r.batch}`)).toEqual(['ort/1']);
    expect(report.rows[0]!.tpotMs.median).toBeGreaterThan(0);
    expect(loaded.runs[0]!.html).not.toBeNull();
    for (const n of names) if (n.endsWith('.json')) expect(() => JSON.parse(readFileSync(join(dir, n), 'utf8'))).not.toThrow();
  }, 90_000);
});
