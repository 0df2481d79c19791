/** Shared pipeline pieces and performance figures. */
import { describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/checkpoints.js';
import { seedBatch, SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { CapacityError } from '../src/errors.js';
import { checkCapacity, topK } from '../src/pipeline/common.js';
import type { GenerateResult, PipelineInfo } from '../src/pipeline/types.js';
import { decodeFigures, measured, median, percentile, seedPerfLines } from '../src/report/perf.js';

describe('topK', () => {
  it('agrees with a full sort on random rows, ties broken by lower id', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 50; trial++) {
      const row = Array.from({ length: 97 }, () => Math.round(rnd() * 20) / 4); // many ties
      const k = 1 + (trial % 12);
      const expected = row.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, k);
      const got = topK(row, k);
      expect(got.ids).toEqual(expected.map((e) => e.i));
      expect(got.values).toEqual(expected.map((e) => e.v));
    }
    expect(topK([1, 2, 3], 0)).toEqual({ ids: [], values: [] });
    expect(topK([1, 2], 5).ids).toEqual([1, 0]);
  });
});

describe('capacity', () => {
  const opt = openCheckpoint(tinyModelDir('opt'));
  it('accepts exactly max_tokens and refuses one more, naming the flag', () => {
    expect(() => checkCapacity(opt, 30, 10, 20)).not.toThrow();
    expect(() => checkCapacity(opt, 30, 10, 21)).toThrow(CapacityError);
    expect(() => checkCapacity(opt, 30, 10, 21)).toThrow(/^--max_tokens: .*needs 31 tokens.*is 30/);
  });
  it("refuses more tokens than a learned position table holds", () => {
    expect(() => checkCapacity(opt, 4096, 10, 1015)).toThrow(/--max_new_tokens: .*1024 positions/);
  });
});

describe('seed prompts', () => {
  it('repeats the eight prompts to fill larger batches, in order', () => {
    expect(seedBatch(3)).toEqual(SEED_PROMPTS.slice(0, 3));
    expect(seedBatch(10)).toEqual([...SEED_PROMPTS, SEED_PROMPTS[0], SEED_PROMPTS[1]]);
  });
});

function run(totalMs: number, firstTokenMs: number, steps: number[], promptLength = 10): { totalMs: number; result: GenerateResult } {
  return { totalMs, result: { sequences: [], promptLength, steps: steps.length + 1, timings: { firstTokenMs, decodeStepMs: steps, totalMs } } };
}

describe('performance figures', () => {
  it('median and percentile', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)).toBe(9);
  });

  it("prints the seed's lines as utils.py computes them (prefill folded in, 12*L*H^2 parameters)", () => {
    const dims = { numLayers: 2, hiddenSize: 1000 } as Parameters<typeof seedPerfLines>[2];
    const runs = [run(999, 1, []), run(999, 1, []), run(999, 1, []), run(100, 1, []), run(300, 1, [])];
    // measured: 100 and 300 ms over 10 tokens -> 10 and 30 ms per token, avg 20 ms
    const lines = seedPerfLines(runs, 10, dims, 'float16', 4);
    expect(lines[0]).toBe('Avg Per Token Latency:    20.00 ms');
    // 24e6 params * 2 bytes / 0.02 s = 2.4 GB/s; * batch 4 / 1e12 = 0.0096 -> "0.01"
    expect(lines[1]).toBe('Avg BW:     2.40 GB/s');
    expect(lines[2]).toBe('Avg flops:     0.01 TFlops/s');
  });

  it('computes time per output token without prefill, and bandwidth from real parameter bytes', () => {
    const info = { parameters: 1e6, parameterBytes: 4e6 } as PipelineInfo;
    const runs = [run(0, 0, [99]), run(50, 20, [2, 4, 6], 10), run(60, 10, [4, 4, 4], 10)];
    expect(measured(runs)).toHaveLength(2);
    const d = decodeFigures(runs, info, 2);
    expect(d.ttftMs).toBe(15);
    expect(d.tpotMs).toBe(4);
    expect(d.decodeTokensPerSec).toBe(500);
    expect(d.prefillTokensPerSec).toBeCloseTo((2 * 10 * 1000) / 15);
    expect(d.bandwidthGBps).toBeCloseTo(4e6 / 0.004 / 1e9);
    expect(d.tflops).toBeCloseTo((2 * 1e6 * 2) / 0.004 / 1e12);
  });
});
