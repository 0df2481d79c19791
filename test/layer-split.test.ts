/**
 * --world_size on the WGSL engine: the layers split across 2 and 3 Dawn devices (on lavapipe,
 * devices of one adapter) give exactly the tokens and logits of one device, for every
 * architecture the engine runs, float and int4; each rank holds its range of layers, and the
 * step profile counts the hidden state each rank hands on.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TINY_ARCHS, writeTinyCheckpoint } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { layerSlices } from '../src/kernels/weights.js';
import type { DType } from '../src/pipeline/types.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';
import type { BenchReport } from '../src/report/bench-report.js';
import { validateBenchReport } from '../src/report/bench-validate.js';
import type { CompareReport } from '../src/report/compare-report.js';
import { validateCompareReport } from '../src/report/compare-validate.js';

import { inProcessCli } from './helpers.js';

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
if (!process.env['VK_ICD_FILENAMES'] && existsSync(LAVAPIPE)) process.env['VK_ICD_FILENAMES'] = LAVAPIPE;

const LAYERS = 5;
const root = mkdtempSync(join(tmpdir(), 'fusegen-split-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));


describe('layerSlices', () => {
  it('covers every layer once, in order, extras on the earlier ranks, embedding first and head last', () => {
    expect(layerSlices(5, 3)).toEqual([
      { from: 0, to: 2, first: true, last: false },
      { from: 2, to: 4, first: false, last: false },
      { from: 4, to: 5, first: false, last: true },
    ]);
    expect(layerSlices(4, 1)).toEqual([{ from: 0, to: 4, first: true, last: true }]);
    for (const [n, r] of [[22, 4], [24, 2], [7, 7]] as const) {
      const s = layerSlices(n, r);
      expect(s.map((x) => x.to - x.from).reduce((a, b) => a + b)).toBe(n);
      s.forEach((x, i) => expect(x.from).toBe(i === 0 ? 0 : s[i - 1]!.to));
      expect(Math.max(...s.map((x) => x.to - x.from)) - Math.min(...s.map((x) => x.to - x.from))).toBeLessThanOrEqual(1);
    }
  });
});

async function run(dir: string, dtype: DType, worldSize: number) {
  const pipe = await WgslPipeline.create(openCheckpoint(dir), { dtype, maxTokens: 64, worldSize });
  try {
    const prompts = SEED_PROMPTS.slice(0, 3);
    const greedy = await pipe.generate({ prompts, maxNewTokens: 6, doSample: false });
    const profile = pipe.takeStepProfile();
    const sampled = await pipe.generate({ prompts, maxNewTokens: 6, doSample: true, seed: 7 });
    const rows = greedy.sequences.map((s) => [...s.promptIds, ...s.newIds]);
    const logits = await pipe.score(rows, rows.map(() => 1));
    return { greedy: greedy.sequences.map((s) => s.newIds), sampled: sampled.sequences.map((s) => s.newIds), logits, profile, eps: pipe.info.executionProviders };
  } finally {
    await pipe.dispose();
  }
}

describe.each(TINY_ARCHS)('%s, 5 layers, split across devices', (arch) => {
  const dir = join(root, arch);
  const cases: Array<[DType, number]> = [['float32', 2], ['float32', 3], ...(arch === 'gemma2' || arch === 'gpt2' ? ([['int4', 2]] as Array<[DType, number]>) : [])];

  it.each(cases)('%s across %i devices: the tokens and logits of one device', async (dtype, ranks) => {
    writeTinyCheckpoint(dir, arch, { layers: LAYERS });
    const one = await run(dir, dtype, 1);
    const split = await run(dir, dtype, ranks);
    expect(split.greedy).toEqual(one.greedy);
    expect(split.sampled).toEqual(one.sampled);
    // The hidden state crosses through the host unchanged and every rank runs the same kernels: bit for bit.
    split.logits.forEach((row, b) => row.forEach((l, p) => expect(Array.from(l), `row ${b} position ${p}`).toEqual(Array.from(one.logits[b]![p]!))));

    const slices = layerSlices(LAYERS, ranks);
    expect(split.eps).toHaveLength(ranks);
    split.eps.forEach((ep, r) => expect(ep).toContain(`rank ${r}, shared adapter: layers ${slices[r]!.from}-${slices[r]!.to - 1}`));
    expect(one.profile.ranks).toBeUndefined();
    const profiled = split.profile.ranks!;
    expect(profiled.map((r) => r.layers)).toEqual(slices.map((s) => [s.from, s.to]));
    const hidden = openCheckpoint(dir).dims.hiddenSize * 4;
    profiled.forEach((r, i) => {
      expect(r.msPerStep).toBeGreaterThan(0);
      if (i === ranks - 1) expect(r.transferBytesPerStep).toBe(0);
      // At least 3 rows of E floats a step cross each boundary.
      else expect(r.transferBytesPerStep).toBeGreaterThanOrEqual(3 * hidden);
    });
    // Greedy steps split across devices wait for each other: none is submitted ahead.
    expect(split.profile.stepsAhead).toBe(0);
  });
});

describe('--world_size on the command line', () => {

  const llama = () => {
    const dir = join(root, 'cli-llama');
    writeTinyCheckpoint(dir, 'llama', { layers: LAYERS });
    return dir;
  };
  const gen = (dir: string) => ['generate', '--model', dir, '--device', 'webgpu', '--use_kernel', '--greedy', '--max_new_tokens', '6', '--batch_size', '2'];
  /** The seed's lines without the timings (which differ run to run). */
  const texts = (out: string[]) => out.filter((l) => !/time/.test(l) && !l.startsWith('world_size'));

  it('generate: the seed\'s output of one device, then where each rank ran', async () => {
    const dir = llama();
    const one = await inProcessCli(gen(dir));
    expect(one.code, one.err.join('\n')).toBe(0);
    const two = await inProcessCli([...gen(dir), '--world_size', '2']);
    expect(two.code, two.err.join('\n')).toBe(0);
    expect(texts(two.out)).toEqual(texts(one.out));
    const ranks = two.out.filter((l) => l.startsWith('world_size 2: '));
    expect(ranks).toHaveLength(2);
    expect(ranks[0]).toContain('rank 0, shared adapter: layers 0-2');
    expect(ranks[1]).toContain('rank 1, shared adapter: layers 3-4');
    // WORLD_SIZE from a launcher's environment does the same.
    const env = await inProcessCli(gen(dir), { WORLD_SIZE: '2' });
    expect(texts(env.out)).toEqual(texts(one.out));
    expect(env.out.filter((l) => l.startsWith('world_size 2: '))).toHaveLength(2);
  });

  it('another local rank prints one line and exits 0; a rank past the world is refused', async () => {
    const dir = llama();
    for (const cmd of [gen(dir), ['compare', '--model', dir], ['bench', '--model', dir]]) {
      const other = await inProcessCli(cmd, { WORLD_SIZE: '2', LOCAL_RANK: '1' });
      expect(other).toEqual({ code: 0, out: ['local rank 1 of 2: nothing to do, local rank 0 drives every device'], err: [] });
    }
    const past = await inProcessCli([...gen(dir), '--world_size', '2', '--local_rank', '2']);
    expect(past.code).toBe(2);
    expect(past.err).toHaveLength(1);
    expect(past.err[0]).toMatch(/^error: --local_rank: 2 is not below --world_size 2/);
  });

  it('bad inputs: more ranks than layers, a pipeline that does not split, too few GPUs named', async () => {
    const dir = llama();
    const refusals: Array<[string[], Record<string, string>, string]> = [
      [[...gen(dir), '--world_size', '6'], {}, 'error: --world_size: 6 ranks for the 5 layers of'],
      [['generate', '--model', dir, '--world_size', '2'], {}, 'error: --world_size: 2 splits the layers across WebGPU devices'],
      [['compare', '--model', dir, '--world_size', '2'], {}, "error: --world_size: 2 splits the candidate's layers across WebGPU devices"],
      [['bench', '--model', dir, '--world_size', '2'], {}, 'error: --world_size: 2 splits the layers across WebGPU devices'],
      [['compare', '--model', dir, '--device', 'webgpu', '--use_kernel', '--world_size', '9'], {}, 'error: --world_size: 9 ranks for the 5 layers of'],
      [[...gen(dir), '--world_size', '3'], { FUSEGEN_RANK_DEVICES: 'pci-0000_18_00_0,pci-0000_2a_00_0' }, 'error: FUSEGEN_RANK_DEVICES: names 2 GPUs for --world_size 3'],
    ];
    for (const [args, env, line] of refusals) {
      const r = await inProcessCli(args, env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out, args.join(' ')).toEqual([]);
      expect(r.err).toHaveLength(1);
      expect(r.err[0]!.startsWith(line), r.err[0]).toBe(true);
    }
  });

  it('compare gates the split candidate against the reference, and bench reports each rank', async () => {
    const dir = llama();
    const reports = mkdtempSync(join(tmpdir(), 'fusegen-split-reports-'));
    const c = await inProcessCli(['compare', '--model', dir, '--device', 'webgpu', '--use_kernel', '--dtype', 'float32', '--world_size', '2', '--min_length', '16', '--max_length', '24', '--speed_repeats', '1', '--report_dir', reports]);
    expect(c.code, c.err.join('\n')).toBe(0);
    expect(c.out).toContain('gate: pass');
    const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('-compare.json'))!), 'utf8')) as CompareReport;
    expect(() => validateCompareReport(report)).not.toThrow();
    expect(Object.values(report.environment.executionProviders).flat().filter((e) => / \(rank \d, shared adapter: layers /.test(e))).toHaveLength(2);

    const b = await inProcessCli(['bench', '--model', dir, '--device', 'webgpu', '--pipelines', 'wgsl', '--dtype', 'float32', '--world_size', '3', '--repeats', '1', '--max_new_tokens', '4', '--report_dir', reports]);
    expect(b.code, b.err.join('\n')).toBe(0);
    const bench = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('-bench.json'))!), 'utf8')) as BenchReport;
    expect(() => validateBenchReport(bench)).not.toThrow();
    const ranks = bench.rows[0]!.stepProfile!.ranks!;
    expect(ranks.map((r) => r.layers)).toEqual([[0, 2], [2, 4], [4, 5]]);
    expect(ranks.map((r) => r.transferBytesPerStep > 0)).toEqual([true, true, false]);
    expect(b.out.filter((l) => /^wgsl b1 p16 rank \d \(layers \d-\d\): [\d.]+ ms a step/.test(l))).toHaveLength(3);
  });
});
