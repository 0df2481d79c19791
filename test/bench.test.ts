/** The bench command: a small sweep on the tiny fixture, its report and dashboard exports. */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { promptOfLength, stats, type BenchReport } from '../bench/run.js';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { main } from '../src/cli/main.js';

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
    }
    const smaller = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-smaller-is-better.json'))!), 'utf8')) as Array<{ name: string; unit: string; value: number }>;
    expect(smaller).toHaveLength(16);
    expect(smaller[0]).toMatchObject({ unit: 'ms', name: expect.stringContaining('gpt2 cpu float32 reference b1 p5') });
    const bencher = JSON.parse(readFileSync(join(dir, files.find((f) => f.endsWith('-bencher.json'))!), 'utf8')) as Record<string, Record<string, { value: number }>>;
    expect(Object.keys(bencher)).toHaveLength(8);
    expect(bencher['gpt2/cpu/float32/ort/b3/p20']!['decode-tokens-per-s']!.value).toBeGreaterThan(0);
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
