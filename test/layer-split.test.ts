/**
 * --world_size on the WGSL engine: the layers split across 2 and 3 Dawn devices (on lavapipe,
 * devices of one adapter) give exactly the tokens and logits of one device, for every
 * architecture the engine runs, float and int4; each rank holds its range of layers, and the
 * step profile counts the hidden state each rank hands on.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TINY_ARCHS, writeTinyCheckpoint } from '../fixtures/checkpoints.js';
import { SEED_PROMPTS } from '../fixtures/prompts.js';
import { openCheckpoint } from '../src/arch/checkpoint.js';
import { layerSlices } from '../src/kernels/weights.js';
import type { DType } from '../src/pipeline/types.js';
import { WgslPipeline } from '../src/pipeline/wgsl.js';

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
